"""The listeners' TLS contexts, read again from the files on SIGHUP, without a restart.

Public CAs issue certificates for 90 days and fewer, so an ACME client replaces
``server_cert_file`` every few weeks; an operator renewing dls's generated certificate
moves ``certs/server.pem`` away; one onboarding phones with factory certificates adds
their vendor's CA bundle to ``certs/vendor-ca/``, or takes away one that should no longer
be trusted. Either then signals the server (``kill -HUP``, a systemd ``ExecReload``):
the supervisor creates what is missing (``ensure_pki``) and passes the signal on, and
each process builds every listener's context anew from the files: server chains, the
device CA and the vendor bundles. New connections are handed the new context; open ones
keep theirs.

- **A listening site's context cannot be replaced** (neither aiohttp nor the event loops
  offer a way), and the CAs a context trusts can be added to but never removed. So the
  site keeps the context it started with, and its server-name callback, which OpenSSL
  calls on every ClientHello (with or without SNI), moves each new connection to the
  newest context before the certificate is chosen or a client's is verified: that
  connection is then served by its chains and verified against its CAs.
- **All or nothing.** The new contexts are complete before any connection is handed to
  one; a file that does not load (a key that is not the certificate's, a half-written
  chain, a bundle with no certificate) changes nothing, and the log names it. This also
  covers ``load_cert_chain``'s own trap: it replaces a context's certificate before it
  checks the key, so loading into a live context could have left it unusable.
- A client resuming a TLS session from before the reload is not verified again: OpenSSL
  resumes with the certificate checked at the session's first handshake, for the ticket
  lifetime (2 hours); the site's ticket keys, which could end that, cannot be changed
  from Python. A restart ends every session. Settings are not re-read: their changes
  still need a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cryptography import x509

from dls.metrics import SERVER_CERTIFICATE_EXPIRY
from dls.pki import Pki
from dls.tls import TlsFileError, listener_context

__all__ = ["ListenerContexts", "note_expiry"]

log = logging.getLogger("dls.tls")

Chain = tuple[Path, Path]  # certificate chain (leaf first), key
# Told of each listener's new context: what OpenSSL counts per context follows it.
Observer = Callable[[str, ssl.SSLContext], None]


class ListenerContexts:
    """One process's listener contexts: made once per listener for its site, and made
    again, for new connections, on ``reload``."""

    def __init__(self, pki: Pki, *, client_certificates: bool) -> None:
        self._pki = pki
        self._client_certificates = client_certificates
        self.sites: dict[str, ssl.SSLContext] = {}  # as each listener's site started
        self.observers: list[Observer] = []

    def start(self, listener: str) -> ssl.SSLContext:
        """The context for ``listener``'s site; raises TlsFileError."""
        context = self._build(listener)
        self.sites[listener] = context
        return context

    def reload(self) -> bool:
        """Hand new connections contexts read from the files now; False, and nothing
        changed, if one of them does not load."""
        if not self.sites:  # still starting: the sites will read the files as they are
            return True
        listeners = " ".join(self.sites)
        try:
            fresh = {listener: self._build(listener) for listener in self.sites}
        except TlsFileError as exc:
            log.error(
                "certificates not reloaded, the previous ones still serve: %s",
                exc.reason,
                extra={"fields": {"files": exc.files, "listeners": listeners}},
            )
            return False
        for listener, context in fresh.items():
            self.sites[listener].sni_callback = _handing_over_to(context)
            for observer in self.observers:
                observer(listener, context)
        expiries = {certificate: _expiry(certificate) for certificate, _ in self._pki.server_chains}
        for certificate, expires in expiries.items():
            _show(certificate, expires)
        fields = {"listeners": listeners, "expires": _listed(expiries)}
        if "device" in self.sites and self._client_certificates:
            fields["vendor_ca_bundles"] = str(len(self._pki.vendor_ca_files()))
        log.info("certificates reloaded", extra={"fields": fields})
        return True

    def _build(self, listener: str) -> ssl.SSLContext:
        return listener_context(listener, self._pki, client_certificates=self._client_certificates)


def _handing_over_to(
    context: ssl.SSLContext,
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
    def hand_over(ssl_object: ssl.SSLObject, _name: str | None, _site: ssl.SSLContext) -> None:
        ssl_object.context = context

    return hand_over


def note_expiry(chains: Iterable[Chain]) -> None:
    """Each chain's expiry on ``/metrics``, as the process starts serving it."""
    for certificate, _ in chains:
        _show(certificate, _expiry(certificate))


def _expiry(certificate: Path) -> dt.datetime | None:
    """When the chain's leaf expires; None if the stricter ``cryptography`` parser refuses
    a certificate OpenSSL took: that costs the metric, never the reload or the start."""
    try:
        return x509.load_pem_x509_certificate(certificate.read_bytes()).not_valid_after_utc
    except (OSError, ValueError) as exc:
        log.warning("server certificate expiry unknown: %s: %s", certificate, exc)
        return None


def _show(certificate: Path, expires: dt.datetime | None) -> None:
    if expires is not None:
        SERVER_CERTIFICATE_EXPIRY.labels(certificate=certificate.name).set(expires.timestamp())


def _listed(expiries: Mapping[Path, dt.datetime | None]) -> str:
    return ", ".join(
        f"{path.name} until {when.isoformat() if when else 'unknown'}"
        for path, when in expiries.items()
    )
