"""Importing images: what the catalog says decides what is admitted."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dls.db.types import utcnow
from dls.devices.catalog import load_catalog as load_models
from dls.firmware.blobstore import BlobStore
from dls.firmware.catalog import FirmwareCatalog, load_catalog
from dls.firmware.imports import ImportRefused, ImportRequest, check_request
from dls.firmware.models import ChecksumSource, FirmwareImage, FirmwareImageModel
from dls.services import Services
from tests.firmware.conftest import import_image

GENUINE = b"snom image bytes " * 1000
SIZED = b"yealink image bytes " * 500

MANIFESTS = {
    "snom": f"""vendor = "snom"
[[releases]]
version = "10.1.99.1"
notes = "test"
source = "https://example.net/snom"
[[releases.images]]
models = ["D785"]
file = "snomD785-10.1.99.1-SIP-r.bin"
size = {len(GENUINE)}
sha256 = "{hashlib.sha256(GENUINE).hexdigest()}"
checksum_known = true
checksum_source = "https://example.net/snom"
[[releases.images]]
models = ["D735"]
file = "snomD735-10.1.99.1-SIP-r.bin"
checksum_known = false
""",
    "yealink": f"""vendor = "yealink"
[[releases]]
version = "108.99.0.1"
notes = "test"
source = "https://example.net/yealink"
[[releases.images]]
models = ["T46U", "T43U"]
file = "T46U(T43U)-108.99.0.1.rom"
size = {len(SIZED)}
checksum_known = false
""",
}
LOOKUP = load_models().lookup


@pytest.fixture
def catalog(tmp_path: Path) -> FirmwareCatalog:
    directory = tmp_path / "catalog"
    directory.mkdir()
    for vendor, text in MANIFESTS.items():
        (directory / f"{vendor}.toml").write_text(text)
    return load_catalog(directory)


async def stream(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 4096):
        yield data[start : start + 4096]


def test_a_catalogued_release_fills_in_name_digest_and_size(catalog: FirmwareCatalog) -> None:
    checked = check_request(ImportRequest("snom", "10.1.99.1", ("d785",)), catalog, LOOKUP)
    assert checked.models == ("D785",)  # the validated spelling
    assert checked.file_name == "snomD785-10.1.99.1-SIP-r.bin"
    assert checked.expected_sha256 == hashlib.sha256(GENUINE).hexdigest()
    assert checked.source is ChecksumSource.CATALOG
    unknown = check_request(ImportRequest("snom", "10.1.0.1", ("D785",)), catalog, LOOKUP)
    assert (unknown.expected_sha256, unknown.source) == (None, ChecksumSource.OPERATOR)
    assert unknown.file_name == "snom-10.1.0.1.bin"


@pytest.mark.parametrize(
    ("request_", "reason", "message"),
    [
        (ImportRequest("snom", "10.1.99.1", ("D785", "D735")), "not_in_release", "different"),
        (ImportRequest("snom", "10.1.99.1", ("D785", "D345")), "not_in_release", "not for D345"),
        (ImportRequest("snom", "10.1.99.1", ("X9",)), "invalid", "not a validated model"),
        (ImportRequest("yealink", "1\n2", ("T46U",)), "invalid", "one line"),
        (ImportRequest("yealink", "1.0", ()), "invalid", "name 1-64 models"),
        (ImportRequest("yealink", "1.0", ("T46U",), "../x.rom"), "invalid", "bare file name"),
    ],
)
def test_requests_the_catalog_contradicts_are_refused(
    catalog: FirmwareCatalog, request_: ImportRequest, reason: str, message: str
) -> None:
    with pytest.raises(ImportRefused, match=message) as refused:
        check_request(request_, catalog, LOOKUP)
    assert refused.value.reason == reason


@pytest.mark.db
async def test_a_published_size_is_enforced(
    services: Services, catalog: FirmwareCatalog, tmp_path: Path
) -> None:
    store = BlobStore(tmp_path / "store")
    checked = check_request(ImportRequest("yealink", "108.99.0.1", ("T46U",)), catalog, LOOKUP)
    async with services.sessions() as session, session.begin():
        with pytest.raises(ImportRefused, match="the catalog says") as refused:
            await import_image(
                session, store, checked, stream(SIZED[:-1]),
                max_size=10**9, imported_by=None, now=utcnow(),
            )  # fmt: skip
        assert refused.value.reason == "size_mismatch"
        with pytest.raises(ImportRefused, match="larger than") as refused:
            await import_image(
                session, store, checked, stream(SIZED + b"!"),
                max_size=10**9, imported_by=None, now=utcnow(),
            )  # fmt: skip
        assert refused.value.reason == "too_large"
    assert [path for path in store.root.rglob("*") if path.is_file()] == []
    async with services.sessions() as session, session.begin():
        result = await import_image(
            session, store, checked, stream(SIZED),
            max_size=10**9, imported_by=7, now=utcnow(),
        )  # fmt: skip
        assert result.created and result.image.checksum_source is ChecksumSource.OPERATOR
        assert result.image.file_name == "T46U(T43U)-108.99.0.1.rom"
    # The other model of the same image joins it; the same bytes again change nothing.
    both = check_request(ImportRequest("yealink", "108.99.0.1", ("T43U", "T46U")), catalog, LOOKUP)
    async with services.sessions() as session, session.begin():
        joined = await import_image(
            session, store, both, stream(SIZED), max_size=10**9, imported_by=7, now=utcnow()
        )
        assert joined.created and joined.image.id == result.image.id
        assert sorted(joined.image.models) == ["T43U", "T46U"]
        again = await import_image(
            session, store, both, stream(SIZED), max_size=10**9, imported_by=7, now=utcnow()
        )
        assert not again.created
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(FirmwareImage)) == 1
        assert await session.scalar(select(func.count()).select_from(FirmwareImageModel)) == 2
