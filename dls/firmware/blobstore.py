"""Content-addressed store for firmware images: ``<root>/<first 2 hex>/<sha256>``.

Images are large (a Poly split zip is ~1 GB), arrive as a stream (an aiohttp request body)
and live in a directory that several server processes, possibly on several hosts, share
(DESIGN.md: "firmware blobs on a shared directory"). The rules that make that safe:

- **Write, then publish.** Bytes go to a private temp file under ``<root>/.incoming/``
  (same file system as the blobs, so the final ``os.replace`` is an atomic rename). A blob
  path therefore only ever names a complete file whose SHA-256 is its name; a reader never
  sees a partial image. The temp file is fsynced before the rename, so a crash cannot
  leave a blob name pointing at unwritten data.
- **Hash and count while streaming.** SHA-256 and size are computed as chunks arrive; the
  size limit is checked before each chunk is written, so an oversized upload is cut off
  early and never fills the disk. On any failure (limit, digest mismatch, client abort,
  cancellation) the temp file is deleted and nothing is stored.
- **Deduplicate by name.** Identical bytes have the same name. If the blob exists the
  import is a no-op returning the same address. Two processes importing the same image at
  once both rename identical, fully verified content onto the same name; whichever lands
  last wins and readers see one complete file either way. No lock is needed.

Blocking I/O: file writes, fsync and rename run in worker threads (``asyncio.to_thread``),
never on the event loop: on a network share a single write or fsync can stall for seconds.
Incoming chunks are gathered into :data:`WRITE_BLOCK_SIZE` blocks so the thread hand-off
costs little per byte, and each block is hashed in the same thread, because hashlib
releases the GIL for large buffers and the loop keeps serving phones meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "DEFAULT_MAX_SIZE",
    "WRITE_BLOCK_SIZE",
    "BlobError",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "ChecksumMismatch",
    "EmptyBlob",
    "InvalidDigest",
    "StoredBlob",
    "validate_sha256",
]

DEFAULT_MAX_SIZE = 2 * 1024**3  # bytes; the largest public image we list is ~1 GB (Poly zip)
WRITE_BLOCK_SIZE = 1024 * 1024  # bytes handed to one worker-thread write + hash
STALE_IMPORT_AGE = 24 * 3600.0  # seconds; a temp file untouched this long is abandoned
BLOB_MODE = 0o644  # images are not secret; a front proxy may serve them straight from disk

_INCOMING = ".incoming"
_TEMP_PREFIX = "import-"
_TEMP_SUFFIX = ".part"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobError(Exception):
    """Base class of blob store errors."""


class InvalidDigest(BlobError, ValueError):
    """A sha256 argument is not exactly 64 lowercase hex digits (rejects path tricks)."""


class BlobTooLarge(BlobError):
    """The stream exceeded the size limit; the import was aborted and nothing stored."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"image exceeds the limit of {limit} bytes")


class EmptyBlob(BlobError):
    """The stream carried no bytes; an empty file is never a firmware image."""


class ChecksumMismatch(BlobError):
    """The bytes do not have the expected SHA-256; nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 mismatch: expected {expected}, got {actual}")


class BlobNotFound(BlobError, LookupError):
    """No blob is stored under that sha256."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"no blob {sha256}")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """Where an imported image lives. ``created`` is false when it was already stored."""

    sha256: str
    size: int
    path: Path
    created: bool


def validate_sha256(value: object) -> str:
    """Return ``value`` if it is 64 lowercase hex digits, else raise :class:`InvalidDigest`.

    The digest becomes a path below the store root, so this is the traversal guard: only
    ``[0-9a-f]`` can reach the file system. Upper case is rejected rather than folded so
    that one blob has exactly one name, also on case-insensitive shares.
    """
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise InvalidDigest(f"not a sha256 digest: {value!r:.80}")
    return value


class BlobStore:
    """The image directory. One instance per process; any number of processes per root."""

    __slots__ = ("_incoming", "max_size", "root")

    def __init__(self, root: Path, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.root = root
        self.max_size = max_size
        self._incoming = root / _INCOMING

    def path_for(self, sha256: str) -> Path:
        """The path a blob with this digest has (whether or not it exists)."""
        digest = validate_sha256(sha256)
        return self.root / digest[:2] / digest

    def locate(self, sha256: str) -> Path:
        """Path of the stored blob, for serving (e.g. ``web.FileResponse``).

        Raises :class:`InvalidDigest` for a malformed digest and :class:`BlobNotFound` if
        nothing regular is stored under it. One ``stat``: cheap enough for the loop.
        """
        path = self.path_for(sha256)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None
        if not stat.S_ISREG(info.st_mode):
            raise BlobNotFound(sha256)
        return path

    def open(self, sha256: str) -> IO[bytes]:
        """Open the blob for reading. Blocking: call it from a worker thread."""
        return self.locate(sha256).open("rb")

    def exists(self, sha256: str) -> bool:
        try:
            self.locate(sha256)
        except BlobNotFound:
            return False
        return True

    async def import_stream(
        self,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        """Stream an image into the store and return its address.

        ``max_size`` (default: the store's) is enforced while streaming. With
        ``expected_sha256``, other bytes raise :class:`ChecksumMismatch`; and if that blob
        is already stored the stream is not read at all. On any error, cancellation
        included, the temp file is removed and nothing is stored; the one exception is a
        cancellation that lands while the verified file is being renamed into place, which
        may still leave that complete, correct blob.
        """
        limit = self.max_size if max_size is None else max_size
        if limit <= 0:
            raise ValueError("max_size must be positive")
        if expected_sha256 is not None:
            validate_sha256(expected_sha256)
            existing = await asyncio.to_thread(self._existing, expected_sha256, limit)
            if existing is not None:
                return existing

        temp_path, handle = await asyncio.to_thread(self._create_temp)
        try:
            hasher = hashlib.sha256()
            size = 0
            block = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(limit)
                block += chunk
                if len(block) >= WRITE_BLOCK_SIZE:
                    # Hand the full block to the thread and start a fresh one: no copy, and
                    # the thread never sees a buffer the loop is still appending to.
                    full, block = block, bytearray()
                    await asyncio.to_thread(_write_block, handle, hasher, full)
            if block:
                await asyncio.to_thread(_write_block, handle, hasher, block)
            if size == 0:
                raise EmptyBlob("the stream carried no bytes")
            digest = hasher.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256:
                raise ChecksumMismatch(expected_sha256, digest)
            created = await asyncio.to_thread(self._publish, handle, temp_path, digest)
        except BaseException:
            # Synchronous on purpose: cleanup must also run when the task is being
            # cancelled, and closing a file plus one unlink is short.
            handle.close()
            temp_path.unlink(missing_ok=True)
            raise
        return StoredBlob(digest, size, self.path_for(digest), created)

    def remove_stale_imports(self, max_age: float = STALE_IMPORT_AGE) -> int:
        """Delete temp files of imports abandoned by crashed processes. Blocking.

        A running import touches its temp file at least once per block, so anything older
        than ``max_age`` seconds is dead. Returns how many files were removed.
        """
        if not self._incoming.is_dir():
            return 0
        cutoff = time.time() - max_age
        removed = 0
        for path in self._incoming.glob(f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another instance swept it first
                continue
        return removed

    # Worker-thread helpers below: blocking by design, never called on the loop.

    def _existing(self, sha256: str, limit: int) -> StoredBlob | None:
        path = self.path_for(sha256)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > limit:
            raise BlobTooLarge(limit)
        return StoredBlob(sha256, info.st_size, path, created=False)

    def _create_temp(self) -> tuple[Path, IO[bytes]]:
        self._incoming.mkdir(parents=True, exist_ok=True)
        # mkstemp uses O_EXCL with a random name: unique across processes and, on NFSv3+,
        # across hosts sharing the directory.
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=self._incoming)
        return Path(name), os.fdopen(fd, "wb")

    def _publish(self, handle: IO[bytes], temp_path: Path, digest: str) -> bool:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        final = self.path_for(digest)
        if final.exists():
            temp_path.unlink(missing_ok=True)
            return False
        final.parent.mkdir(exist_ok=True)
        os.chmod(temp_path, BLOB_MODE)
        # Another process may publish the same digest between the check and here; both
        # files are complete and verified identical, so replacing one with the other is safe.
        os.replace(temp_path, final)
        _fsync_directory(final.parent)
        return True


def _write_block(handle: IO[bytes], hasher: hashlib._Hash, block: bytearray) -> None:
    hasher.update(block)
    handle.write(block)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable on POSIX; some platforms and shares cannot open directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
