"""Handshakes that never became a request are counted, since nothing else shows them."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from dls import handshakes
from dls.config import load_settings
from dls.handshakes import HandshakeCounts
from dls.pki import ensure_pki
from dls.tls import admin_context


def _count(stage: str) -> float:
    labels = {"listener": "admin", "stage": stage}
    return REGISTRY.get_sample_value("dls_tls_handshakes_total", labels) or 0.0


async def test_a_failed_handshake_is_started_and_never_completed(tmp_path: Path) -> None:
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    server_context = admin_context(pki)
    counts = HandshakeCounts({"admin": server_context})

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
    stranger = ssl.create_default_context()  # a phone without our CA
    before = {stage: _count(stage) for stage in ("started", "completed")}
    async with server:
        for client in (trusting, trusting, stranger):
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client, server_hostname="localhost"
                )
            except ssl.SSLCertVerificationError:
                assert client is stranger
                continue
            writer.close()
        await asyncio.sleep(0.1)  # the server has read the stranger's alert
        await counts.stop()  # samples a last time
    grown = {stage: _count(stage) - before[stage] for stage in before}
    assert grown == {"started": 3, "completed": 2}
    counts.sample()  # nothing new: nothing counted twice
    assert {stage: _count(stage) - before[stage] for stage in before} == grown


async def test_counts_follow_on_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interval = 0.05
    monkeypatch.setattr(handshakes, "SAMPLE_INTERVAL_S", interval)
    pki = ensure_pki(load_settings(None, certs_dir=tmp_path / "certs", data_dir=tmp_path))
    server_context = admin_context(pki)
    counts = HandshakeCounts({"admin": server_context})
    await counts.start()
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server_context)
    before = _count("completed")
    async with server:
        port = server.sockets[0].getsockname()[1]
        trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=trusting, server_hostname="localhost"
        )
        writer.close()
        await asyncio.sleep(interval * 4)
        assert _count("completed") - before == 1
    await counts.stop()
