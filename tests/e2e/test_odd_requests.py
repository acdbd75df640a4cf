"""What a scanner or a broken phone sends the device listener: bytes that are not UTF-8,
a request line aiohttp cannot parse. Each gets the answer a plain request would, and the
server goes on recording and logging everything else as before."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.e2e.admin import AdminClient, eventually
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]

UNKNOWN_MAC = "001565abcdef"  # a Yealink MAC nobody registered
AGENT = b"Yealink SIP-T46U 108.86.0.90"


async def _send(server: ServerProcess, head: bytes) -> tuple[bytes, bytes]:
    """One request as raw bytes over TLS; the status line and the body."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.device_port, ssl=server.ssl_context(), server_hostname="localhost"
    )
    writer.write(head + b"Host: localhost\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    status, _, rest = answer.partition(b"\r\n")
    return status, rest.partition(b"\r\n\r\n")[2]


async def test_bytes_that_are_not_utf8_get_the_plain_answer_and_break_nothing(
    server: ServerProcess,
) -> None:
    path = b"GET /prov/%s.cfg HTTP/1.1\r\n" % UNKNOWN_MAC.encode()
    plain = await _send(server, path + b"User-Agent: " + AGENT + b"\r\n")
    assert plain[0] == b"HTTP/1.1 401 Unauthorized"

    # Digest fields with such bytes were hashed as they came and raised: a 500.
    digest = (
        b'Authorization: Digest username="\xff\xfe", realm="dls", nonce="n\xff", '
        b'uri="/prov/\xff", response="00000000000000000000000000000000"\r\n'
    )
    odd = await _send(server, path + b"User-Agent: " + AGENT + b"\r\n" + digest)
    assert odd == plain

    # A User-Agent with them (Gigaset's pattern takes any version): the sighting is
    # stored with the bytes escaped (it failed the ledger's batch, every round), and the
    # access log keeps its lines (its buffer's write raised: a second's lines went).
    gigaset = b"GET /prov/7c2f80aabbcc.xml HTTP/1.1\r\n"
    agent = b"Gigaset N870 IP PRO/83.V2.11.0\xff;7C2F80AABBCC"
    status, _ = await _send(server, gigaset + b"User-Agent: " + agent + b"\r\n")
    assert status == b"HTTP/1.1 401 Unauthorized"
    async with aiohttp.ClientSession() as session:
        admin = await AdminClient.operator(server, session)
        (sighted,) = await eventually(
            lambda: admin.unclaimed("gigaset"), lambda found: len(found) == 1
        )
    assert (sighted["mac"], sighted["firmware_version"], sighted["user_agent"]) == (
        "7c2f80aabbcc",
        "83.V2.11.0\\xff",
        "Gigaset N870 IP PRO/83.V2.11.0\\xff;7C2F80AABBCC",
    )

    # A request line aiohttp cannot parse: its 400, one warning, an access line.
    status, _ = await _send(server, b"GET /prov/\xff.cfg HTTP/1.1\r\n")
    assert status == b"HTTP/1.0 400 Bad Request"
    assert await server.stop() == 0
    output = server.output()
    assert "malformed HTTP request: InvalidURLError (Invalid char in url path)" in output
    assert "UNKNOWN / 400 listener=device" in output
    assert 'ua="Gigaset N870 IP PRO/83.V2.11.0\\\\xff;7C2F80AABBCC"' in output
    assert "Traceback" not in output and "ERROR" not in output
