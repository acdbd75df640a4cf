"""A lean transport for the simulated Unify phones of ``bench/wpi.py``.

``dls.sim.unify.UnifyPhone`` speaks HTTP through an aiohttp ``ClientSession`` per phone:
its connector, cookie jar and response machinery cost the load generator about as much
CPU as the server spends on the same messages, on the same two cores. ``StreamPhone``
is the same phone (its item store, messages, checks and Retry-After handling are the
simulator's) with HTTP/1.1 written and read by hand on one asyncio TLS stream, opened
for the phone's interaction as a booting phone opens one. Only what the WPI exchange
uses is implemented: POST with a body, a status line, headers, ``Content-Length``
bodies, ``Connection: close`` and the session cookie. No secure mode (port 18444).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from dls.sim.unify import (
    COOKIE,
    LOGIN_SERVICE_PATH,
    MAX_ANSWER_BYTES,
    USER_AGENT,
    HttpAnswer,
    SimulationError,
    UnifyPhone,
)

MAX_HEAD_BYTES = 16 * 1024


class StreamPhone(UnifyPhone):
    def __init__(self, mac: str, *, host: str, port: int, tls: ssl.SSLContext, **kwargs: Any):
        url = f"https://{host}:{port}"
        super().__init__(mac, device_url=url, secure_url=url, tls=tls, **kwargs)
        self._host, self._port = host, port
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._fixed = (
            f"POST {LOGIN_SERVICE_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: text/xml; charset=utf-8\r\nUser-Agent: {USER_AGENT}\r\n"
        )

    async def _post(self, body: bytes, cookie: str | None) -> HttpAnswer:
        if self.secure:
            raise SimulationError("the lean transport has no secure mode")
        if self._stream is None or self._stream[0].at_eof():
            await self._drop()
            self._stream = await asyncio.open_connection(
                self._host, self._port, ssl=self.tls, limit=MAX_HEAD_BYTES
            )
        reader, writer = self._stream
        head = self._fixed + f"Content-Length: {len(body)}\r\n"
        if cookie:
            head += f"Cookie: {COOKIE}={cookie}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            await writer.drain()
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
            headers: dict[str, str] = {}
            session: str | None = None
            for line in lines:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "set-cookie":
                    key, _, rest = value.partition("=")
                    if key.strip() == COOKIE:
                        session = rest.partition(";")[0].strip().strip('"')
                elif name:
                    headers[name] = value
            length = int(headers["content-length"]) if "content-length" in headers else None
            if length is not None and length > MAX_ANSWER_BYTES:
                raise SimulationError(f"answer of {length} bytes")
            answer = await reader.readexactly(length) if length else b""
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ) as error:
            await self._drop()
            raise SimulationError(f"bad HTTP answer: {error}") from error
        if headers.get("connection", "").lower() == "close":
            await self._drop()
        return HttpAnswer(
            status=int(status_line.split(" ", 2)[1]),
            body=answer,
            retry_after=headers.get("retry-after"),
            chunked="chunked" in headers.get("transfer-encoding", "").lower(),
            content_length=length,
            cookie=session,
        )

    async def _drop(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def close(self) -> None:
        await self._drop()
        await super().close()
