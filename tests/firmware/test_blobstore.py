"""The content-addressed blob store: streaming import, limits, dedup, races, lookups."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dls.firmware import blobstore
from dls.firmware.blobstore import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    ChecksumMismatch,
    EmptyBlob,
    InvalidDigest,
    validate_sha256,
)

CHUNK = 64 * 1024  # what aiohttp's iter_chunked typically hands over


def _image(size: int, seed: int = 1) -> bytes:
    # Deterministic, incompressible-looking bytes without a random module.
    block = hashlib.sha256(seed.to_bytes(4, "big")).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class Source:
    """An async chunk stream that counts how much the store pulled from it."""

    def __init__(self, data: bytes, chunk: int = CHUNK, *, pause: bool = False) -> None:
        self.data = data
        self.chunk = chunk
        self.pause = pause
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            if self.pause:
                await asyncio.sleep(0)  # let concurrent imports interleave
            piece = self.data[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece


def _leftovers(root: Path) -> list[Path]:
    incoming = root / ".incoming"
    return sorted(incoming.iterdir()) if incoming.exists() else []


def _blobs(root: Path) -> list[Path]:
    return sorted(
        path for path in root.glob("*/*") if path.is_file() and path.parent.name != ".incoming"
    )


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", max_size=64 * 1024 * 1024)


async def test_streamed_import_is_addressed_by_sha256(store: BlobStore) -> None:
    data = _image(3 * 1024 * 1024 + 12345)  # several write blocks plus a ragged tail
    digest = hashlib.sha256(data).hexdigest()

    stored = await store.import_stream(Source(data))

    assert stored.sha256 == digest
    assert stored.size == len(data)
    assert stored.created is True
    assert stored.path == store.root / digest[:2] / digest
    assert stored.path.read_bytes() == data
    assert stat.S_IMODE(stored.path.stat().st_mode) == blobstore.BLOB_MODE
    assert _leftovers(store.root) == []
    assert store.locate(digest) == stored.path


async def test_expected_sha256_is_accepted_when_it_matches(store: BlobStore) -> None:
    data = _image(200_000)
    digest = hashlib.sha256(data).hexdigest()
    stored = await store.import_stream(Source(data), expected_sha256=digest)
    assert stored.sha256 == digest and stored.created


async def test_second_identical_import_is_a_no_op(store: BlobStore) -> None:
    data = _image(500_000)
    first = await store.import_stream(Source(data))
    inode = first.path.stat().st_ino

    second = await store.import_stream(Source(data))

    assert second.sha256 == first.sha256 and second.path == first.path
    assert second.size == len(data)
    assert second.created is False
    assert first.path.stat().st_ino == inode  # the stored file was not replaced
    assert _blobs(store.root) == [first.path]
    assert _leftovers(store.root) == []


async def test_known_digest_already_stored_skips_the_stream(store: BlobStore) -> None:
    data = _image(100_000)
    first = await store.import_stream(Source(data))
    again = Source(data)

    stored = await store.import_stream(again, expected_sha256=first.sha256)

    assert stored.path == first.path and stored.created is False and stored.size == len(data)
    assert again.pulled == 0


async def test_checksum_mismatch_leaves_nothing_behind(store: BlobStore) -> None:
    data = _image(1_500_000)
    wrong = hashlib.sha256(b"something else").hexdigest()

    with pytest.raises(ChecksumMismatch) as caught:
        await store.import_stream(Source(data), expected_sha256=wrong)

    assert caught.value.expected == wrong
    assert caught.value.actual == hashlib.sha256(data).hexdigest()
    assert _blobs(store.root) == []
    assert _leftovers(store.root) == []
    assert not store.exists(caught.value.actual)


async def test_size_limit_is_enforced_while_streaming(store: BlobStore) -> None:
    data = _image(10 * 1024 * 1024)
    source = Source(data)
    limit = 1024 * 1024

    with pytest.raises(BlobTooLarge) as caught:
        await store.import_stream(source, max_size=limit)

    assert caught.value.limit == limit
    assert source.pulled <= limit + CHUNK  # aborted at the first chunk past the limit
    assert _blobs(store.root) == []
    assert _leftovers(store.root) == []


async def test_store_default_limit_applies(tmp_path: Path) -> None:
    small = BlobStore(tmp_path / "blobs", max_size=1000)
    with pytest.raises(BlobTooLarge):
        await small.import_stream(Source(_image(1001), chunk=100))
    stored = await small.import_stream(Source(_image(1000), chunk=100))  # exactly the limit
    assert stored.size == 1000


async def test_known_digest_larger_than_the_limit_is_refused(store: BlobStore) -> None:
    data = _image(5000)
    first = await store.import_stream(Source(data))
    with pytest.raises(BlobTooLarge):
        await store.import_stream(Source(data), expected_sha256=first.sha256, max_size=4999)


async def test_empty_stream_is_refused(store: BlobStore) -> None:
    with pytest.raises(EmptyBlob):
        await store.import_stream(Source(b""))
    assert _leftovers(store.root) == []


async def test_broken_stream_leaves_nothing_behind(store: BlobStore) -> None:
    async def dropped_connection() -> AsyncIterator[bytes]:
        yield _image(2 * 1024 * 1024)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.import_stream(dropped_connection())
    assert _blobs(store.root) == []
    assert _leftovers(store.root) == []


async def test_cancelled_import_leaves_nothing_behind(store: BlobStore) -> None:
    started = asyncio.Event()

    async def stalled_upload() -> AsyncIterator[bytes]:
        yield _image(3 * 1024 * 1024)
        started.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    task = asyncio.create_task(store.import_stream(stalled_upload()))
    await started.wait()
    assert len(_leftovers(store.root)) == 1  # the import is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _blobs(store.root) == []
    assert _leftovers(store.root) == []


async def test_concurrent_imports_of_one_image_store_it_once(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    data = _image(2 * 1024 * 1024 + 1)
    stores = [BlobStore(root) for _ in range(4)]  # as if four server processes

    results = await asyncio.gather(
        *(store.import_stream(Source(data, chunk=32 * 1024, pause=True)) for store in stores)
    )

    assert {result.sha256 for result in results} == {hashlib.sha256(data).hexdigest()}
    assert len(_blobs(root)) == 1
    assert _blobs(root)[0].read_bytes() == data
    assert _leftovers(root) == []


_IMPORTER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from pathlib import Path
    from dls.firmware.blobstore import BlobStore

    root, image, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    async def chunks():
        with image.open("rb") as handle:
            while piece := handle.read(16 * 1024):
                yield piece
                await asyncio.sleep(0)

    async def main():
        while not go.exists():
            time.sleep(0.01)
        stored = await BlobStore(root).import_stream(chunks())
        print(json.dumps({"sha256": stored.sha256, "created": stored.created}))

    asyncio.run(main())
    """
)


def test_processes_importing_the_same_image_at_once(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    image = tmp_path / "image.bin"
    data = _image(6 * 1024 * 1024 + 7)
    image.write_bytes(data)
    go = tmp_path / "go"

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _IMPORTER, str(root), str(image), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()  # release them together
    results: list[dict[str, Any]] = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results.append(json.loads(out))

    assert {result["sha256"] for result in results} == {hashlib.sha256(data).hexdigest()}
    assert any(result["created"] for result in results)
    blobs = _blobs(root)
    assert len(blobs) == 1 and blobs[0].read_bytes() == data
    assert _leftovers(root) == []


async def test_blocking_writes_run_off_the_event_loop(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    writer_threads: list[int] = []
    original = blobstore._write_block

    def recording(*args: Any) -> None:
        writer_threads.append(threading.get_ident())
        original(*args)

    monkeypatch.setattr(blobstore, "_write_block", recording)
    data = _image(3 * blobstore.WRITE_BLOCK_SIZE + 5)
    await store.import_stream(Source(data))

    assert len(writer_threads) == 4  # three full blocks and the tail, not one per chunk
    assert loop_thread not in writer_threads


BAD_DIGESTS: list[Any] = [
    "../../../../etc/passwd",
    "ab/../../../etc/passwd",
    "/etc/passwd",
    "..",
    "",
    "0" * 63,
    "0" * 65,
    "0" * 62 + "/x",
    "0" * 63 + "\x00",
    "0" * 64 + "\n",
    "\n" + "0" * 64,
    "A" * 64,  # upper case: one blob, one name, also on case-insensitive shares
    "g" * 64,
    "%2e%2e%2f" + "0" * 55,
    "０" * 64,  # full-width digits are not hex digits  # noqa: RUF001
    None,
    64,
    b"0" * 64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
async def test_malformed_digests_are_rejected(store: BlobStore, digest: Any) -> None:
    with pytest.raises(InvalidDigest):
        validate_sha256(digest)
    with pytest.raises(InvalidDigest):
        store.path_for(digest)
    with pytest.raises(InvalidDigest):
        store.locate(digest)
    with pytest.raises(InvalidDigest):
        store.exists(digest)
    if digest is not None:  # None is the import's "no expected digest"
        with pytest.raises(InvalidDigest):
            await store.import_stream(Source(b"x"), expected_sha256=digest)
    assert _leftovers(store.root) == []


def test_invalid_digest_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a sha256 digest"):
        validate_sha256("../etc")


async def test_locate_and_open_a_stored_blob(store: BlobStore) -> None:
    data = _image(70_000)
    stored = await store.import_stream(Source(data))
    with store.open(stored.sha256) as handle:
        assert handle.read() == data
    assert store.exists(stored.sha256)


def test_missing_blob_is_not_found(store: BlobStore) -> None:
    digest = hashlib.sha256(b"absent").hexdigest()
    with pytest.raises(BlobNotFound):
        store.locate(digest)
    assert store.exists(digest) is False


def test_a_directory_under_a_blob_name_is_not_a_blob(store: BlobStore) -> None:
    digest = hashlib.sha256(b"dir").hexdigest()
    store.path_for(digest).mkdir(parents=True)
    with pytest.raises(BlobNotFound):
        store.locate(digest)


def test_stale_imports_are_swept(store: BlobStore) -> None:
    incoming = store.root / ".incoming"
    incoming.mkdir(parents=True)
    stale = incoming / "import-dead.part"
    fresh = incoming / "import-live.part"
    stale.write_bytes(b"abandoned")
    fresh.write_bytes(b"in progress")
    old = time.time() - 2 * blobstore.STALE_IMPORT_AGE
    os.utime(stale, (old, old))

    assert store.remove_stale_imports() == 1
    assert not stale.exists() and fresh.exists()


def test_limits_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        BlobStore(tmp_path, max_size=0)


async def test_upload_and_download_through_aiohttp(store: BlobStore, aiohttp_client: Any) -> None:
    async def upload(request: web.Request) -> web.Response:
        try:
            stored = await store.import_stream(
                request.content.iter_chunked(CHUNK),
                expected_sha256=request.query.get("sha256"),
                max_size=4 * 1024 * 1024,
            )
        except BlobTooLarge:
            raise web.HTTPRequestEntityTooLarge(
                max_size=4 * 1024 * 1024, actual_size=request.content_length or 0
            ) from None
        return web.json_response({"sha256": stored.sha256, "created": stored.created})

    async def download(request: web.Request) -> web.StreamResponse:
        try:
            return web.FileResponse(store.locate(request.match_info["sha256"]))
        except (InvalidDigest, BlobNotFound):
            raise web.HTTPNotFound() from None

    app = web.Application()
    app.router.add_post("/fw", upload)
    app.router.add_get("/fw/{sha256}", download)
    client = await aiohttp_client(app)

    data = _image(1_000_000)
    digest = hashlib.sha256(data).hexdigest()
    response = await client.post("/fw", data=data, params={"sha256": digest})
    assert response.status == 200
    assert await response.json() == {"sha256": digest, "created": True}

    fetched = await client.get(f"/fw/{digest}")
    assert fetched.status == 200 and await fetched.read() == data
    assert (await client.get("/fw/..%2F..%2Fetc%2Fpasswd")).status == 404

    too_big = await client.post("/fw", data=_image(5 * 1024 * 1024, seed=2))
    assert too_big.status == 413
    assert _leftovers(store.root) == []
