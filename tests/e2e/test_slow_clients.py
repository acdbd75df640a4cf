"""Clients that connect and stall hold a connection for idle_timeout or body_timeout at
most, on the real server over TLS: silent after the handshake, trickling headers, or
sending part of a body. A client that keeps its connection busy is not cut off."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.admin import AdminClient, eventually
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]

IDLE_S = 1.0
BODY_S = 1.0
LINGER_S = 10.0  # aiohttp's lingering_time: it reads what is still coming before closing
GUARD_S = 20.0  # far past all of them: a connection still open then is held for good


@pytest.fixture
async def strict(tmp_path: Path, database_url: str) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(
        tmp_path,
        database_url,
        env={"DLS_IDLE_TIMEOUT": str(IDLE_S), "DLS_BODY_TIMEOUT": str(BODY_S)},
    )
    await process.start()
    yield process
    await process.stop()


async def _open(
    server: ServerProcess, listener: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = {"device": server.device_port, "admin": server.admin_port}[listener]
    return await asyncio.open_connection(
        "localhost", port, ssl=server.ssl_context(), server_hostname="localhost"
    )


async def _closed(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection, having sent nothing (more)."""
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), GUARD_S) == b""
    return time.monotonic() - started


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes, float]:
    """The head and body of the server's answer, and how long it took to come."""
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
    waited = time.monotonic() - started
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length), waited


async def test_connections_without_a_complete_request_head_are_closed(
    strict: ServerProcess,
) -> None:
    silent = await _open(strict, "device")
    trickling = await _open(strict, "device")
    trickling[1].write(b"GET /prov/y000000000044.cfg HTTP/1.1\r\nHost: dls\r\n")
    for reader, _ in (silent, trickling):
        assert await _closed(reader) < IDLE_S + 3


async def test_a_body_that_does_not_arrive_in_time_is_a_408(strict: ServerProcess) -> None:
    reader, writer = await _open(strict, "device")
    writer.write(
        b"POST /DeploymentService/LoginService HTTP/1.1\r\nHost: dls\r\n"
        b"Content-Type: text/xml\r\nContent-Length: 400\r\n\r\n<WorkpointMessage"
    )
    head, _, waited = await _answer(reader)
    assert head.startswith(b"HTTP/1.1 408 ") and waited < BODY_S + 3
    assert b"Connection: close" in head
    assert await _closed(reader) < LINGER_S + 3

    async with aiohttp.ClientSession() as session:
        admin = await AdminClient.operator(strict, session)
    body = json.dumps({"name": "Slow Ltd", "kind": "customer", "country": "DE"}).encode()
    reader, writer = await _open(strict, "admin")
    writer.write(
        b"POST /api/v1/tenants HTTP/1.1\r\nHost: dls\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {admin.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:5]
    )
    head, payload, waited = await _answer(reader)
    assert head.startswith(b"HTTP/1.1 408 ") and waited < BODY_S + 3
    assert json.loads(payload)["error"] == "timeout"
    assert await _closed(reader) < LINGER_S + 3


async def test_a_busy_keep_alive_connection_outlives_the_idle_timeout(
    strict: ServerProcess,
) -> None:
    reader, writer = await _open(strict, "device")
    started = time.monotonic()
    while time.monotonic() - started < 3 * IDLE_S:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: dls\r\n\r\n")
        head, _, _ = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(IDLE_S / 4)
    writer.close()


async def test_a_client_that_hangs_up_mid_body_is_no_database_failure(
    strict: ServerProcess,
) -> None:
    """Phones drop connections; such a hang-up once logged 'database unavailable' and
    counted as a 503."""
    async with aiohttp.ClientSession() as session:
        admin = await AdminClient.operator(strict, session)
    cut = [
        (
            "admin",
            b"POST /api/v1/tenants HTTP/1.1\r\nHost: dls\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {admin.token}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{",
        ),
        (
            "device",
            b"POST /DeploymentService/LoginService HTTP/1.1\r\nHost: dls\r\n"
            b"Content-Type: text/xml\r\nContent-Length: 100\r\n\r\n<Work",
        ),
    ]
    for listener, request in cut:
        _, writer = await _open(strict, listener)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    async def log() -> str:
        return strict.output()

    # Each process writes its access lines within a second: wait for both hang-ups'.
    output = await eventually(log, lambda text: text.count(" 400 listener=") >= 2, GUARD_S)
    assert "database unavailable" not in output and "Traceback" not in output, output[-2000:]
