"""Importing a firmware image: check it against the catalog, store it, record it.

Shared by ``dls firmware import`` and the operator's upload endpoint. The order matters:

1. The request is checked before a byte is read: validated models of the vendor, and
   what the catalog says about that (vendor, version, model): when the catalog lists the
   release, every model must be in the same image of it.
2. The bytes stream into the blob store with the size limit and, when the catalog
   publishes a SHA-256, that digest: a tampered or truncated image never gets a name.
   When only the size is published, a different size is refused after streaming.
3. The image is recorded with who vouches for it (the catalog, or the operator for
   images the catalog has no digest for), and which (model, version) it serves. A
   model and version that already has another image is a conflict; the same bytes again
   are a no-op.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.errors import DomainError
from dls.firmware.blobstore import (
    WRITE_BLOCK_SIZE,
    BlobStore,
    BlobTooLarge,
    ChecksumMismatch,
    EmptyBlob,
    StoredBlob,
)
from dls.firmware.catalog import FirmwareCatalog, FirmwareMatch, model_key
from dls.firmware.models import ChecksumSource, FirmwareImage, FirmwareImageModel
from dls.firmware.versions import MAX_VERSION_LENGTH, version_key

__all__ = [
    "ImportRefused",
    "ImportRequest",
    "ImportResult",
    "ModelLookup",
    "audit_changes",
    "check_request",
    "file_chunks",
    "receive_image",
    "record_image",
]

FILE_CHUNK = 1024 * 1024  # bytes read per worker-thread call when importing from a file
MAX_MODELS = 64

# (vendor, model) -> (vendor, validated model name, lines) or None; the model catalog's.
ModelLookup = Callable[[str, str], tuple[str, str, int] | None]


class ImportRefused(DomainError):
    """The image is not admitted; ``reason`` is a stable code for the API."""

    def __init__(self, reason: str, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(field, message, conflict=conflict)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ImportRequest:
    vendor: str
    version: str
    models: tuple[str, ...]
    file_name: str | None = None  # default: the catalog's file name, else "<vendor>-<version>.bin"


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    vendor: str
    version: str
    models: tuple[str, ...]  # validated names
    file_name: str
    expected_sha256: str | None
    expected_size: int | None
    source: ChecksumSource


@dataclass(frozen=True, slots=True)
class ImportResult:
    image: FirmwareImage
    created: bool  # False: these bytes were already imported for these models


def check_request(
    request: ImportRequest, catalog: FirmwareCatalog, lookup: ModelLookup
) -> CheckedRequest:
    """Everything that can be refused before reading the image; raises ``ImportRefused``."""
    version = request.version.strip()
    if not version or len(version) > MAX_VERSION_LENGTH or any(c in version for c in "\r\n\t"):
        raise ImportRefused("invalid", "version", "1-64 characters on one line")
    if not request.models or len(request.models) > MAX_MODELS:
        raise ImportRefused("invalid", "models", f"name 1-{MAX_MODELS} models")
    names: list[str] = []
    for model in request.models:
        found = lookup(request.vendor, model)
        if found is None:
            raise ImportRefused(
                "invalid", "models", f"{request.vendor} {model} is not a validated model"
            )
        if found[1] not in names:
            names.append(found[1])
    matches = [catalog.find(request.vendor, name, version) for name in names]
    listed = [match for match in matches if match is not None]
    if listed and len(listed) != len(matches):
        missing = [name for name, match in zip(names, matches, strict=True) if match is None]
        raise ImportRefused(
            "not_in_release",
            "models",
            f"the catalog lists {request.vendor} {version} but not for {', '.join(missing)}",
        )
    if len({id(match.image) for match in listed}) > 1:
        raise ImportRefused(
            "not_in_release",
            "models",
            f"the catalog has these models in different images of {version}; import each",
        )
    match: FirmwareMatch | None = listed[0] if listed else None
    file_name = request.file_name or (match.image.file if match and match.image.file else None)
    file_name = file_name or f"{request.vendor}-{version}.bin"
    if "/" in file_name or "\\" in file_name or file_name in {".", ".."} or len(file_name) > 255:
        raise ImportRefused("invalid", "file_name", "a bare file name of up to 255 characters")
    sha256 = match.image.sha256 if match else None
    return CheckedRequest(
        vendor=request.vendor,
        version=version,
        models=tuple(names),
        file_name=file_name,
        expected_sha256=sha256,
        expected_size=match.image.size if match else None,
        source=ChecksumSource.CATALOG if sha256 else ChecksumSource.OPERATOR,
    )


async def receive_image(
    store: BlobStore,
    checked: CheckedRequest,
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    *,
    max_size: int,
) -> StoredBlob:
    """Steps 1 and 2: the bytes, streamed into the store and verified; no database, so
    no transaction is held while they arrive (``record_image`` follows in its own)."""
    limit = min(max_size, checked.expected_size or max_size)
    try:
        if checked.expected_sha256 and await asyncio.to_thread(
            store.exists, checked.expected_sha256
        ):
            # The store would skip the stream; the bytes sent must still be the right ones.
            stored = await _verify_only(store, chunks, checked.expected_sha256, limit)
        else:
            stored = await store.import_stream(
                chunks, expected_sha256=checked.expected_sha256, max_size=limit
            )
    except ChecksumMismatch as error:
        raise ImportRefused(
            "checksum_mismatch",
            "image",
            f"sha256 {error.actual} is not the published {error.expected}: refused",
        ) from None
    except BlobTooLarge as error:
        raise ImportRefused("too_large", "image", f"larger than {error.limit} bytes") from None
    except EmptyBlob:
        raise ImportRefused("invalid", "image", "the image is empty") from None
    if checked.expected_size is not None and stored.size != checked.expected_size:
        await _discard(store, stored)
        raise ImportRefused(
            "size_mismatch",
            "image",
            f"{stored.size} bytes, the catalog says {checked.expected_size}: refused",
        )
    return stored


async def record_image(
    session: AsyncSession,
    checked: CheckedRequest,
    stored: StoredBlob,
    imported_by: int | None,
    now: dt.datetime,
) -> ImportResult:
    """Step 3, in ``session``'s transaction."""
    key = version_key(checked.version)
    model_keys = [model_key(name) for name in checked.models]
    taken = (
        await session.execute(
            select(FirmwareImageModel.model_key, FirmwareImage)
            .join(FirmwareImage, FirmwareImage.id == FirmwareImageModel.image_id)
            .where(
                FirmwareImageModel.vendor == checked.vendor,
                FirmwareImageModel.version_key == key,
                FirmwareImageModel.model_key.in_(model_keys),
            )
        )
    ).all()
    others = [row.model_key for row in taken if row.FirmwareImage.sha256 != stored.sha256]
    if others:
        raise ImportRefused(
            "conflict",
            "version",
            f"{checked.vendor} {checked.version} already has another image for {others}",
            conflict=True,
        )
    existing = taken[0].FirmwareImage if taken else None
    if existing is None:
        existing = await session.scalar(
            select(FirmwareImage).where(
                FirmwareImage.vendor == checked.vendor,
                FirmwareImage.version_key == key,
                FirmwareImage.sha256 == stored.sha256,
            )
        )
    created = existing is None
    if existing is None:
        existing = FirmwareImage(
            vendor=checked.vendor,
            version=checked.version,
            version_key=key,
            models=list(checked.models),
            sha256=stored.sha256,
            size=stored.size,
            file_name=checked.file_name,
            checksum_source=checked.source,
            imported_by=imported_by,
            imported_at=now,
        )
        session.add(existing)
        await session.flush()
    covered = {row.model_key for row in taken}
    for name, key_of_model in zip(checked.models, model_keys, strict=True):
        if key_of_model in covered:
            continue
        created = True
        session.add(
            FirmwareImageModel(
                vendor=checked.vendor,
                model_key=key_of_model,
                version_key=key,
                image_id=existing.id,
            )
        )
        if name not in existing.models:
            existing.models = [*existing.models, name]
    await session.flush()
    return ImportResult(existing, created)


def audit_changes(image: FirmwareImage) -> dict[str, object]:
    """What the audit keeps of an imported image, whichever way it came in."""
    return {
        "vendor": image.vendor,
        "version": image.version,
        "models": list(image.models),
        "sha256": image.sha256,
        "size": image.size,
        "checksum_source": image.checksum_source,
    }


async def _verify_only(
    store: BlobStore,
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    expected: str,
    limit: int,
) -> StoredBlob:
    """Hash a stream whose blob is stored already, writing nothing."""
    hasher = hashlib.sha256()
    size = 0
    block = bytearray()
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BlobTooLarge(limit)
        block += chunk
        if len(block) >= WRITE_BLOCK_SIZE:
            full, block = block, bytearray()
            await asyncio.to_thread(hasher.update, full)
    hasher.update(block)
    if size == 0:
        raise EmptyBlob("the stream carried no bytes")
    if hasher.hexdigest() != expected:
        raise ChecksumMismatch(expected, hasher.hexdigest())
    return StoredBlob(expected, size, store.path_for(expected), created=False)


async def _discard(store: BlobStore, stored: StoredBlob) -> None:
    # Only a blob this import created: an identical one stored earlier may be in use.
    if stored.created:
        await asyncio.to_thread(stored.path.unlink, missing_ok=True)


async def file_chunks(path: Path, size: int = FILE_CHUNK) -> AsyncIterable[bytes]:
    """A file's bytes for ``receive_image``, read in worker threads."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
