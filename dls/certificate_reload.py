"""Renewed server certificates taken up on SIGHUP, without a restart.

Public CAs issue certificates for 90 days and fewer, so an ACME client replaces
``server_cert_file`` every few weeks; an operator renewing dls's generated certificate
moves ``certs/server.pem`` away. Either then signals the server (``kill -HUP``, a
systemd ``ExecReload``): the supervisor creates what is missing (``ensure_pki``) and
passes the signal on, and each process loads the chains into the listeners' live
contexts. New connections get the new certificate; connections already open keep theirs.

A chain is loaded into a scratch context first: ``load_cert_chain`` replaces the
certificate before it checks the key, so a key that does not match (a half-finished
renewal) would leave a live context with a certificate it cannot use. A failed reload
changes nothing and says so in the log; the old certificate serves until a good one
is given. Only files rewritten in the millisecond between the trial and the load escape
this (``ssl`` loads from paths, not from bytes read once); that is logged as such.
Settings are not re-read: their changes still need a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography import x509

from dls.metrics import SERVER_CERTIFICATE_EXPIRY

__all__ = ["note_expiry", "reload_chains"]

log = logging.getLogger("dls.tls")

Chain = tuple[Path, Path]  # certificate chain (leaf first), key


def reload_chains(contexts: Mapping[str, ssl.SSLContext], chains: Sequence[Chain]) -> bool:
    """Load ``chains`` into every context; False, and nothing changed, if one does not load."""
    listeners = " ".join(sorted(contexts))
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for certificate, key in chains:
        try:
            probe.load_cert_chain(certificate, key)
        except OSError as exc:  # ssl.SSLError included
            log.error(
                "server certificate not reloaded, the previous one still serves: %s",
                _reason(exc),
                extra={"fields": {"files": f"{certificate} {key}", "listeners": listeners}},
            )
            return False
    try:
        for context in contexts.values():
            for certificate, key in chains:
                context.load_cert_chain(certificate, key)
    except OSError as exc:
        # The files changed in the millisecond since the trial: a deploy still writing.
        log.error(
            "server certificate changed while it was reloaded (%s); send SIGHUP again once "
            "the files are complete",
            _reason(exc),
            extra={"fields": {"listeners": listeners}},
        )
        return False
    expiries = {certificate: _expiry(certificate) for certificate, _ in chains}
    for certificate, expires in expiries.items():
        _show(certificate, expires)
    log.info(
        "server certificate reloaded",
        extra={"fields": {"listeners": listeners, "expires": _listed(expiries)}},
    )
    return True


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


def _reason(exc: OSError) -> str:
    """What went wrong in words an operator acts on; ``ssl`` leaves the file name out."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key is not the certificate's"
        return exc.reason or "no PEM certificate chain and key in the files"  # "PEM lib"
    return exc.strerror or str(exc)  # "No such file or directory", "Permission denied"
