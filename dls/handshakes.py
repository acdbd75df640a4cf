"""TLS handshakes per listener: counted, and the failed ones said why.

A phone whose handshake fails (a factory certificate from a CA not in
``certs/vendor-ca/``, a TLS version or cipher in common with nothing, plain HTTP sent to
the HTTPS port) never reaches aiohttp, and Python's TLS layer reports such failures only
in debug mode: no request, access line or error would say it came.

- **Counts.** OpenSSL counts every handshake a context started and every one it
  completed (``SSLContext.session_stats()``: ``accept``, ``accept_good``); each process
  copies the growth of both into a counter every SAMPLE_INTERVAL_S, so ``/metrics``
  shows them summed over the processes. Started minus completed is failed or still under
  way (a client that connects and goes away, a load balancer's TCP check).
- **Reasons.** ``report_failures`` gives a listener's context an ``SSLObject`` class
  whose handshake step notes the error OpenSSL ended it with: counted by its reason
  (``CERTIFICATE_VERIFY_FAILED``, ``TLSV1_ALERT_UNKNOWN_CA``, ... a fixed vocabulary of
  OpenSSL's) and logged once per listener and reason as a ``QuietLog`` warning with
  what an operator can do about it. The client's address is not in it: the TLS object
  is made, and fails, without a reference to its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Mapping

from dls.metrics import TLS_HANDSHAKE_FAILURES, TLS_HANDSHAKES
from dls.quiet import QuietLog

__all__ = ["SAMPLE_INTERVAL_S", "HandshakeCounts", "report_failures"]

SAMPLE_INTERVAL_S = 5.0
_STAGES = (("started", "accept"), ("completed", "accept_good"))
_COUNTERS = tuple(name for _, name in _STAGES)
# Per listener: the newest context and those of the reloads before it (its handshakes
# under way at a reload end within the handshake timeout, long before two more come).
CONTEXTS_FOLLOWED = 3


class HandshakeCounts:
    """Copies each listener's context counters into ``dls_tls_handshakes_total``.

    OpenSSL counts a handshake on the context that serves it, which after a certificate
    reload is the newest one (``dls.certificate_reload``), not the site's: each reload's
    context is followed from then on, and the ones before it for a while, for the
    handshakes under way when it came.
    """

    def __init__(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        # Per listener, its contexts oldest first, with the counts already copied.
        self._contexts: dict[str, list[tuple[ssl.SSLContext, dict[str, int]]]] = {
            listener: [(context, dict.fromkeys(_COUNTERS, 0))]
            for listener, context in contexts.items()
        }
        self._task: asyncio.Task[None] | None = None

    def replaced(self, listener: str, context: ssl.SSLContext) -> None:
        """New connections to ``listener`` are served by ``context`` from now on."""
        followed = self._contexts.setdefault(listener, [])
        followed.append((context, dict.fromkeys(_COUNTERS, 0)))
        if len(followed) > CONTEXTS_FOLLOWED:
            self._sample(listener, *followed.pop(0))

    def sample(self) -> None:
        for listener, followed in self._contexts.items():
            for context, seen in followed:
                self._sample(listener, context, seen)

    @staticmethod
    def _sample(listener: str, context: ssl.SSLContext, seen: dict[str, int]) -> None:
        stats = context.session_stats()
        for stage, name in _STAGES:
            grown = stats[name] - seen[name]
            if grown > 0:
                TLS_HANDSHAKES.labels(listener, stage).inc(grown)
            seen[name] = stats[name]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tls handshake counts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()  # the last seconds' handshakes too

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            self.sample()


def report_failures(contexts: Mapping[str, ssl.SSLContext]) -> None:
    """Makes each listener's failed handshakes counted and logged with their reason."""
    for listener, context in contexts.items():
        name = f"{_ReportingSSLObject.__name__}_{listener}"
        context.sslobject_class = type(name, (_ReportingSSLObject,), {"listener": listener})


class _ReportingSSLObject(ssl.SSLObject):
    """Both event loops (uvloop and asyncio's) drive a server's handshake by calling
    ``do_handshake`` until it stops asking for more bytes; one frame more per call, and
    nothing on a handshake that succeeds."""

    listener = ""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            _report(self.listener, exc)
            raise


_log = QuietLog(logging.getLogger("dls.tls"))
# OpenSSL's reason mnemonics; anything else (none given) is one label value.
_MNEMONIC = re.compile(r"[A-Z0-9_]{1,64}\Z")
_PLAIN_WORDS = re.compile(r"[^A-Za-z0-9 .,()_-]")

# What an operator can do about the reasons phones and clients meet most.
_HINTS = {
    "CERTIFICATE_VERIFY_FAILED": "the client's certificate is from no CA this listener trusts",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate; this listener "
    "requires one from the device CA",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust this server's certificate: give it "
    "certs/ca.pem, or serve a certificate from a CA it trusts",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused this server's certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client refused this server's certificate",
    "HTTP_REQUEST": "plain HTTP sent to this HTTPS port: the client's URL says http://",
    "UNSUPPORTED_PROTOCOL": "the client offers only TLS versions below 1.2",
    "NO_SHARED_CIPHER": "no cipher suite in common with the client",
}
_TRUSTED = {
    "device": "trusted here: the device CA and the bundles in certs/vendor-ca/; "
    "device_client_certificates = false asks phones for none",
    "secure": "trusted here: the device CA only",
}


def _report(listener: str, exc: ssl.SSLError) -> None:
    given = getattr(exc, "reason", None)  # set by OpenSSL's errors, not every SSLError
    reason = given if isinstance(given, str) and _MNEMONIC.match(given) else "OTHER"
    TLS_HANDSHAKE_FAILURES.labels(listener, reason).inc()
    said = reason
    verify = getattr(exc, "verify_message", None)
    if verify:  # OpenSSL's words for why a certificate did not verify
        said += f" ({_PLAIN_WORDS.sub('', verify)[:80]})"
    hint = _HINTS.get(reason)
    if hint and reason == "CERTIFICATE_VERIFY_FAILED" and listener in _TRUSTED:
        hint += f" ({_TRUSTED[listener]})"
    _log.warning(
        f"TLS handshake failed on the {listener} listener: {said}" + (f": {hint}" if hint else "")
    )
