"""TLS handshakes per listener, started and completed, from OpenSSL's own counters.

A phone whose handshake fails (a factory certificate from a CA not in
``certs/vendor-ca/``, a TLS version or cipher in common with nothing, a port scanner)
never reaches aiohttp: Python's TLS layer reports such failures only in debug mode, so
no request, access line or error says it came. OpenSSL counts every handshake a context
started and every one it completed (``SSLContext.session_stats()``: ``accept``,
``accept_good``); each process copies the growth of both into a counter every
SAMPLE_INTERVAL_S, so ``/metrics`` shows them summed over the processes. Started minus
completed is failed or still under way: a handful at any moment under load, a growing
number when phones cannot get in. Which phone failed, and why, these counters cannot say.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping

from dls.metrics import TLS_HANDSHAKES

__all__ = ["SAMPLE_INTERVAL_S", "HandshakeCounts"]

SAMPLE_INTERVAL_S = 5.0
_STAGES = (("started", "accept"), ("completed", "accept_good"))


class HandshakeCounts:
    """Copies each listener's context counters into ``dls_tls_handshakes_total``."""

    def __init__(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        self._contexts = dict(contexts)
        self._seen = {(listener, stage): 0 for listener in self._contexts for stage, _ in _STAGES}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for listener, context in self._contexts.items():
            stats = context.session_stats()
            for stage, name in _STAGES:
                now = stats[name]
                grown = now - self._seen[listener, stage]
                if grown > 0:
                    TLS_HANDSHAKES.labels(listener, stage).inc(grown)
                self._seen[listener, stage] = now

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
