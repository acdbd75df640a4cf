/*
 * LD_PRELOAD shim for wrk: forget the previous TLS session before each handshake.
 *
 * wrk keeps one SSL object per connection slot and reuses it (SSL_shutdown + SSL_clear)
 * when it reconnects, so with "Connection: close" every handshake after the first resumes
 * the previous session from its TLS 1.3 ticket. Checked with nginx's $ssl_session_reused:
 * 1352 of 1356 connections were resumed. Phones reconnect hours apart and do full
 * handshakes, which cost the server more; this shim makes wrk do the same.
 *
 * Built by loadgen.py: gcc -shared -fPIC -O2 -o full_handshake.so full_handshake.c -ldl
 * The prototypes are declared here so the build needs no OpenSSL headers.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_in_before(const SSL *ssl);
int SSL_set_session(SSL *ssl, SSL_SESSION *session);

int SSL_connect(SSL *ssl)
{
    static int (*real_connect)(SSL *);

    if (real_connect == NULL)
        real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    /* Only before the first flight: wrk calls SSL_connect again while the handshake
     * is in progress (non-blocking socket), and the session must not change then. */
    if (SSL_in_before(ssl))
        SSL_set_session(ssl, NULL);
    return real_connect(ssl);
}
