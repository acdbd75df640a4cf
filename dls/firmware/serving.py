"""Firmware downloads on the device listener: ``GET|HEAD /fw/<token>/<name>``.

The request path, top to bottom: verify the token (HMAC, expiry; no database) -> if the
User-Agent names a MAC, it must be the token's device -> find the image (cached by id)
and its blob -> note the download for the rollout (memory only) -> answer: the bytes from
disk with HEAD, Range (206, any number of resumptions), ETag, If-None-Match and If-Range,
or, with ``firmware_accel_redirect`` set, an ``X-Accel-Redirect`` header that hands the
transfer to the front web server. Every refusal is the same 404.

``<name>`` is not looked at: devices that are given a directory (Grandstream P192) append
their own image name, and the token alone says which image is meant.

Under TLS there is no zero-copy path (no kTLS), so the bytes are read in ``CHUNK_SIZE``
pieces, on the event loop while the page cache holds them and in a worker thread when it
does not (``_read_cached``), and written with back-pressure: each download holds a few
chunks in memory however large the image and however slow the phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from dls.firmware.blobstore import BlobNotFound, BlobStore
from dls.firmware.delivery import FIRMWARE_PREFIX, ImageRef
from dls.firmware.progress import DownloadLog
from dls.firmware.tokens import DownloadTokens

__all__ = ["CHUNK_SIZE", "FirmwareDownloads", "FirmwareResponse", "etag_of"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024  # bytes per read: 4 TLS records
WRITE_BUFFER_HIGH = 2 * CHUNK_SIZE  # bytes of output queued per download before waiting
CONTENT_TYPE = "application/octet-stream"
NOT_FOUND_BODY = b"not found\n"
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # fullmatch; ASCII digits only
_BEYOND_ANY_FILE = 10**18  # a position with more digits: int() refuses past 4,300

ImageLookup = Callable[[int], Awaitable[ImageRef | None]]
MacOf = Callable[[str | None], str | None]


def etag_of(sha256: str) -> str:
    """A strong validator every instance agrees on: derived from the content, not mtime."""
    return f'"{sha256[:32]}"'


def _not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_BODY, content_type="text/plain")


class FirmwareDownloads:
    """The download handler. ``mac_of`` reads a MAC from a User-Agent (None if none)."""

    def __init__(
        self,
        tokens: DownloadTokens,
        store: BlobStore,
        image: ImageLookup,
        downloads: DownloadLog,
        mac_of: MacOf,
        *,
        accel_redirect: str = "",
        send_timeout: float,
    ) -> None:
        self._tokens = tokens
        self._store = store
        self._image = image
        self._downloads = downloads
        self._mac_of = mac_of
        self._accel = accel_redirect
        self._send_timeout = send_timeout

    def install(self, app: web.Application) -> None:
        app.router.add_get(FIRMWARE_PREFIX + "{token}/{name:.*}", self.get)  # HEAD too

    async def get(self, request: web.Request) -> web.StreamResponse:
        grant = self._tokens.verify(request.match_info["token"], time.time())
        if grant is None:
            return _not_found()
        claimed = self._mac_of(request.headers.get(hdrs.USER_AGENT))
        if claimed is not None and claimed != grant.mac:
            return _not_found()  # another device's URL
        image = await self._image(grant.image_id)
        if image is None:
            return _not_found()
        try:
            path = self._store.locate(image.sha256)
        except BlobNotFound:
            log.warning("image %s (%s) has no blob in the store", image.id, image.sha256)
            return _not_found()
        if request.method == hdrs.METH_GET:
            self._downloads.started(grant.device_id)
        if self._accel:
            return self._hand_over(image)
        return FirmwareResponse(path, image, self._send_timeout)

    def _hand_over(self, image: ImageRef) -> web.Response:
        """nginx serves the blob from its internal location, Range and HEAD included."""
        response = web.Response(status=200)
        response.headers["X-Accel-Redirect"] = f"{self._accel}{image.sha256[:2]}/{image.sha256}"
        response.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE
        response.headers[hdrs.CONTENT_DISPOSITION] = _disposition(image.file_name)
        response.headers[hdrs.ETAG] = etag_of(image.sha256)
        return response


@dataclass(frozen=True, slots=True)
class _Plan:
    status: int
    start: int = 0
    count: int = 0


class FirmwareResponse(web.StreamResponse):
    """A stored image: conditional requests and one byte range, streamed from disk.

    aiohttp's ``FileResponse`` is not used because its ETag is mtime-based (different on
    every host that copied the store) and its ``If-Range`` takes dates only; phones resume
    with the ETag they were given.
    """

    def __init__(self, path: Path, image: ImageRef, send_timeout: float) -> None:
        super().__init__()
        self._path = path
        self._image = image
        self._send_timeout = send_timeout

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        loop = asyncio.get_running_loop()
        try:
            handle, size, mtime = await loop.run_in_executor(None, _open, self._path)
        except OSError:
            self.set_status(404)
            return await super().prepare(request)
        try:
            return await self._send(request, handle, size, mtime)
        finally:
            await loop.run_in_executor(None, handle.close)

    async def _send(
        self, request: web.BaseRequest, handle: IO[bytes], size: int, mtime: float
    ) -> AbstractStreamWriter | None:
        etag = etag_of(self._image.sha256)
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        plan = _plan(request, etag, last_modified, size)
        self.set_status(plan.status)
        self.headers[hdrs.ETAG] = etag
        self.headers[hdrs.LAST_MODIFIED] = last_modified
        self.headers[hdrs.ACCEPT_RANGES] = "bytes"
        if plan.status == 304:
            return await super().prepare(request)
        if plan.status == 412:
            self.content_length = 0
            return await super().prepare(request)
        if plan.status == 416:
            self.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
            self.content_length = 0
            return await super().prepare(request)
        self.content_type = CONTENT_TYPE
        self.headers[hdrs.CONTENT_DISPOSITION] = _disposition(self._image.file_name)
        self.headers[hdrs.CACHE_CONTROL] = "private, no-transform"
        if plan.status == 206:
            self.headers[hdrs.CONTENT_RANGE] = (
                f"bytes {plan.start}-{plan.start + plan.count - 1}/{size}"
            )
        self.content_length = plan.count
        writer = await super().prepare(request)
        if request.method == hdrs.METH_HEAD or plan.count == 0:
            return writer
        assert writer is not None
        await _stream(request, writer, handle, plan.start, plan.count, self._send_timeout)
        await self.write_eof()
        return writer


def _open(path: Path) -> tuple[IO[bytes], int, float]:
    handle = path.open("rb")
    # fstat of the open file: a blob is never rewritten, but the size must be the file's.
    info = os.fstat(handle.fileno())
    return handle, info.st_size, info.st_mtime


def _plan(request: web.BaseRequest, etag: str, last_modified: str, size: int) -> _Plan:
    """Status and byte range per RFC 9110 §13 (conditions) and §14 (ranges)."""
    if_match = request.headers.get(hdrs.IF_MATCH)
    if if_match is not None and not _tag_listed(if_match, etag, weak=False):
        return _Plan(412)
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None and _tag_listed(if_none_match, etag, weak=True):
        return _Plan(304)
    whole = _Plan(200, 0, size)
    header = request.headers.get(hdrs.RANGE)
    if header is None or request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        return whole
    if_range = request.headers.get(hdrs.IF_RANGE)
    # If-Range with an entity tag must match strongly; with a date, exactly our
    # Last-Modified. Otherwise the representation changed: send all of it.
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return whole
    match = _RANGE.fullmatch(header.replace(" ", ""))
    if match is None:
        return whole  # several ranges or unknown units: a server may ignore Range
    first, last = match.groups()
    if not first and not last:
        return whole
    if not first:  # the last N bytes
        length = min(_position(last), size)
        if length == 0:
            return _Plan(416)
        return _Plan(206, size - length, length)
    start = _position(first)
    if start >= size:
        return _Plan(416)
    end = min(_position(last), size - 1) if last else size - 1
    if end < start:
        return whole  # invalid range: ignored
    return _Plan(206, start, end - start + 1)


def _position(digits: str) -> int:
    return int(digits) if len(digits) < 19 else _BEYOND_ANY_FILE


def _tag_listed(header: str, etag: str, *, weak: bool) -> bool:
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


async def _stream(
    request: web.BaseRequest,
    writer: AbstractStreamWriter,
    handle: IO[bytes],
    offset: int,
    count: int,
    send_timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    # Every listener of dls speaks TLS, so no zero-copy sendfile: the image goes out in
    # chunks, which is also what lets the watchdog see a client that stopped reading.
    # uvloop lets 512 KiB of encrypted output queue per TLS connection before it pushes
    # back: about 1 MB per download with the TCP buffer and a chunk (+279 MB RSS measured
    # for 256 downloads). Two chunks keep the pipe full; with 64 KiB chunks +118 MB.
    with contextlib.suppress(AttributeError, NotImplementedError):
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
    fd = handle.fileno()
    with contextlib.suppress(OSError, AttributeError):  # a hint; not every system has it
        os.posix_fadvise(fd, offset, count, os.POSIX_FADV_SEQUENTIAL)
    watchdog = _Watchdog(loop, transport, offset, send_timeout)
    try:
        await _chunks(writer, fd, offset, offset + count, watchdog)
    finally:
        watchdog.cancel()


async def _chunks(
    writer: AbstractStreamWriter, fd: int, position: int, end: int, watchdog: _Watchdog
) -> None:
    loop = asyncio.get_running_loop()
    cached = _NOWAIT is not None
    while position < end:
        size = min(CHUNK_SIZE, end - position)
        chunk: bytes | memoryview | None = None
        if cached:
            chunk, cached = _read_cached(fd, size, position)
        if chunk is None:
            chunk = await loop.run_in_executor(None, os.pread, fd, size, position)
        if not chunk:
            raise ConnectionResetError("image shorter than its recorded size")
        position += len(chunk)
        await writer.write(chunk)  # waits for the transport to drain past its high mark
        watchdog.position = position


class _Watchdog:
    """Ends a download whose client took nothing for ``send_timeout`` (checked that often,
    so it ends between one and two of them after the last progress): a client that stops
    reading would hold its connection for ever. One timer per period rather than
    ``asyncio.timeout`` around each write, which cost 7 us per 64 KiB chunk."""

    __slots__ = ("_checked", "_handle", "_loop", "_period", "_transport", "position")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.BaseTransport,
        position: int,
        period: float,
    ) -> None:
        self._loop, self._transport, self._period = loop, transport, period
        self.position = self._checked = position  # bytes of the image sent so far
        self._handle = loop.call_later(period, self._check)

    def _check(self) -> None:
        if self.position == self._checked:
            log.info("firmware download ended: the client took nothing for %s s", self._period)
            self._transport.abort()  # the waiting write fails with ConnectionResetError
            return
        self._checked = self.position
        self._handle = self._loop.call_later(self._period, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


# Reading on the event loop costs half the CPU per byte of a worker-thread read (measured:
# 0.8 vs 1.6 CPU s/GB over TLS), but a read that goes to disk, or to a network share, would
# stall every phone this process serves. RWF_NOWAIT (Linux 4.14) reads only what the page
# cache holds and fails with EAGAIN otherwise; that chunk then comes from a worker thread.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def _read_cached(fd: int, size: int, position: int) -> tuple[memoryview | None, bool]:
    """Up to ``size`` bytes at ``position`` if the page cache has them, without blocking;
    and whether to keep trying (False where the file system does not support it)."""
    assert _NOWAIT is not None
    buffer = bytearray(size)
    try:
        read = os.preadv(fd, [buffer], position, _NOWAIT)
    except BlockingIOError:
        return None, True
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return None, False
        raise
    return (memoryview(buffer)[:read] if read else None), True


def _disposition(file_name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(file_name, safe='')}"
