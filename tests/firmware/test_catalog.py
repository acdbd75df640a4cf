"""The firmware catalog: every shipped manifest loads, bad manifests fail with clear lines."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dls.firmware.catalog import (
    DEFAULT_CATALOG_DIR,
    CatalogError,
    FirmwareCatalog,
    Packaging,
    load_catalog,
    load_manifest,
    model_key,
)

SHIPPED_VENDORS = {
    "cisco",
    "fanvil",
    "gigaset",
    "grandstream",
    "poly",
    "snom",
    "unify",
    "yealink",
}
DIGEST = "ab" * 32

Manifest = dict[str, Any]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | date):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(value)


def _to_toml(manifest: Manifest) -> str:
    """Just enough TOML writing for the manifest shape: scalars, releases, images.

    An empty list of tables is written as ``key = []`` so that "empty" stays distinct
    from "missing".
    """
    lines = [
        f"{key} = {_value(value)}"
        for key, value in manifest.items()
        if key != "releases" or value == []
    ]
    for release in manifest.get("releases", []):
        lines.append("[[releases]]")
        lines += [
            f"{key} = {_value(value)}"
            for key, value in release.items()
            if key != "images" or value == []
        ]
        for image in release.get("images", []):
            lines.append("[[releases.images]]")
            lines += [f"{key} = {_value(value)}" for key, value in image.items()]
    return "\n".join(lines) + "\n"


def _valid() -> Manifest:
    return {
        "vendor": "acme",
        "releases": [
            {
                "version": "1.0",
                "released": date(2024, 1, 31),
                "notes": "First build.",
                "source": "https://example.com/acme/1.0",
                "images": [
                    {
                        "models": ["A100", "A200"],
                        "file": "acme-1.0.bin",
                        "size": 1024,
                        "sha256": DIGEST,
                        "checksum_known": True,
                        "checksum_source": "https://example.com/acme/1.0/sha256",
                    }
                ],
            },
            {
                "version": "1.1",
                "notes": "Second build, digest not published.",
                "source": "https://example.com/acme/1.1",
                "images": [{"models": ["A100"], "checksum_known": False}],
            },
        ],
    }


def _write(directory: Path, manifest: Manifest, name: str = "acme") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(_to_toml(manifest))
    return path


def _image(manifest: Manifest) -> dict[str, Any]:
    image: dict[str, Any] = manifest["releases"][0]["images"][0]
    return image


# --- the shipped manifests -------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> FirmwareCatalog:
    return load_catalog(DEFAULT_CATALOG_DIR)


def test_every_shipped_manifest_loads(shipped: FirmwareCatalog) -> None:
    assert set(shipped.vendors) == SHIPPED_VENDORS
    for vendor in SHIPPED_VENDORS:
        assert len(shipped.releases(vendor)) >= 2, vendor


@pytest.mark.parametrize("vendor", sorted(SHIPPED_VENDORS))
def test_each_manifest_file_loads_on_its_own(vendor: str) -> None:
    manifest = load_manifest(DEFAULT_CATALOG_DIR / f"{vendor}.toml")
    assert manifest.vendor == vendor


def test_shipped_digests_are_declared_and_sourced(shipped: FirmwareCatalog) -> None:
    known = 0
    for vendor in shipped.vendors:
        for release in shipped.releases(vendor):
            assert release.source.scheme == "https"
            for image in release.images:
                assert image.checksum_known == (image.sha256 is not None)
                if image.checksum_known:
                    known += 1
                    assert image.checksum_source is not None
    assert known > 0  # Snom publishes some; the rest are honestly unknown


def test_shipped_download_urls_name_the_file(shipped: FirmwareCatalog) -> None:
    for vendor in shipped.vendors:
        for release in shipped.releases(vendor):
            for image in release.images:
                if image.download_url is not None:
                    assert image.file is not None
                    assert image.download_url.path is not None
                    assert image.download_url.path.endswith("/" + image.file), image.file


def test_shipped_lookup_finds_a_release(shipped: FirmwareCatalog) -> None:
    match = shipped.find("yealink", "T46U", "108.86.0.90")
    assert match is not None
    assert match.image.file == "T46U(T43U,T46U,T41U,T48U,T42U,T44U,T44W)-108.86.0.90.rom"
    assert match.image.checksum_known is False

    snom = shipped.find("snom", "760", "8.9.3.80")
    assert snom is not None and snom.image.sha256 is not None

    poly = shipped.find("poly", "VVX_401", "6.4.6")  # the Poly UA spells models this way
    assert poly is not None and poly.image.packaging is Packaging.ZIP

    unify = shipped.find("unify", "OpenScape Desk Phone CP710", "2.0.11.0000")
    assert unify is not None and unify.release.released == date(2023, 6, 26)


# --- lookups ---------------------------------------------------------------------------


def test_find_ignores_case_and_separators_in_models(tmp_path: Path) -> None:
    _write(tmp_path, _valid())
    catalog = load_catalog(tmp_path)
    for spelling in ("A100", "a100", "A_100", "A-100", " a 100 "):
        match = catalog.find("acme", spelling, "1.0")
        assert match is not None, spelling
        assert match.image.file == "acme-1.0.bin"
    assert catalog.find("acme", "A200", "1.1") is None  # 1.1 has no A200 image
    assert catalog.find("acme", "A100", "9.9") is None
    assert catalog.find("other", "A100", "1.0") is None


def test_for_model_lists_every_release_of_a_model(tmp_path: Path) -> None:
    _write(tmp_path, _valid())
    catalog = load_catalog(tmp_path)
    assert [match.release.version for match in catalog.for_model("acme", "a100")] == [
        "1.0",
        "1.1",
    ]
    assert [match.release.version for match in catalog.for_model("acme", "A200")] == ["1.0"]


def test_catalog_entries_are_immutable(tmp_path: Path) -> None:
    _write(tmp_path, _valid())
    release = load_catalog(tmp_path).releases("acme")[0]
    with pytest.raises(ValidationError):
        release.version = "2.0"


def test_model_key() -> None:
    assert model_key("VVX_401") == model_key("VVX401") == "vvx401"
    assert model_key("HT801 V2") != model_key("HT801")
    assert model_key("X5U-V2") != model_key("X5U")


# --- bad manifests ---------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        target: Any = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        target: Any = manifest
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _all(*mutations: Callable[[Manifest], None]) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        for mutation in mutations:
            mutation(manifest)

    return mutate


IMAGE = ("releases", 0, "images", 0)

BAD_MANIFESTS: list[tuple[str, Callable[[Manifest], None], str]] = [
    ("unknown top-level key", _set(("vendr",), "acme"), "vendr: unknown key"),
    (
        "unknown image key",
        _set((*IMAGE, "sha265"), DIGEST),
        "releases[0].images[0].sha265: unknown key",
    ),
    (
        "short sha256",
        _set((*IMAGE, "sha256"), DIGEST[:63]),
        "releases[0].images[0].sha256: sha256 must be exactly 64 lowercase hex digits",
    ),
    (
        "long sha256",
        _set((*IMAGE, "sha256"), DIGEST + "0"),
        "sha256 must be exactly 64 lowercase hex digits",
    ),
    (
        "upper-case sha256",
        _set((*IMAGE, "sha256"), DIGEST.upper()),
        "sha256 must be exactly 64 lowercase hex digits",
    ),
    (
        "non-hex sha256",
        _set((*IMAGE, "sha256"), "g" * 64),
        "sha256 must be exactly 64 lowercase hex digits",
    ),
    ("bad sha1", _set((*IMAGE, "sha1"), "xyz"), "sha1 must be exactly 40 lowercase hex digits"),
    ("duplicate version", _set(("releases", 1, "version"), "1.0"), "duplicate version '1.0'"),
    (
        "duplicate version, other case",
        _all(_set(("releases", 0, "version"), "V2"), _set(("releases", 1, "version"), "v2")),
        "duplicate version 'v2'",
    ),
    (
        "checksum_known without sha256",
        _set(("releases", 1, "images", 0, "checksum_known"), True),
        "releases[1].images[0]: checksum_known = true needs a sha256",
    ),
    (
        "sha256 without checksum_known",
        _set((*IMAGE, "checksum_known"), False),
        "a sha256 is given, so checksum_known must be true",
    ),
    (
        "sha256 without its source",
        _delete((*IMAGE, "checksum_source")),
        "a published sha256 needs checksum_source",
    ),
    (
        "checksum_known missing",
        _delete((*IMAGE, "checksum_known")),
        "releases[0].images[0].checksum_known: Field required",
    ),
    (
        "file with a directory",
        _set((*IMAGE, "file"), "../fw/acme.bin"),
        "file must be a bare file name without directories",
    ),
    (
        "model twice in an image",
        _set((*IMAGE, "models"), ["A100", "a-100"]),
        "models lists a model twice",
    ),
    (
        "model in two images",
        lambda m: m["releases"][0]["images"].append({"models": ["A100"], "checksum_known": False}),
        "model 'A100' is in two images of release '1.0'",
    ),
    ("no models", _set((*IMAGE, "models"), []), "releases[0].images[0].models: Tuple should have"),
    ("zero size", _set((*IMAGE, "size"), 0), "size: Input should be greater than 0"),
    ("no images", _set(("releases", 0, "images"), []), "releases[0].images: Tuple should have"),
    ("no releases", _set(("releases",), []), "releases: Tuple should have"),
    ("source not a URL", _set(("releases", 0, "source"), "see wiki"), "releases[0].source:"),
    ("missing notes", _delete(("releases", 0, "notes")), "releases[0].notes: Field required"),
    ("blank notes", _set(("releases", 0, "notes"), "   "), "releases[0].notes:"),
    ("padded version", _set(("releases", 0, "version"), " 1.0"), "releases[0].version:"),
    ("bad date", _set(("releases", 0, "released"), "soon"), "releases[0].released:"),
    (
        "unknown packaging",
        _set((*IMAGE, "packaging"), "tarball"),
        "releases[0].images[0].packaging: Input should be 'image' or 'zip'",
    ),
    ("upper-case vendor", _set(("vendor",), "Acme"), "vendor: String should match pattern"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=name) for name, mutate, expected in BAD_MANIFESTS],
)
def test_bad_manifest_is_rejected_with_a_clear_line(
    tmp_path: Path, mutate: Callable[[Manifest], None], expected: str
) -> None:
    manifest = copy.deepcopy(_valid())
    mutate(manifest)
    path = _write(tmp_path, manifest)
    with pytest.raises(CatalogError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert expected in message
    assert all(line.startswith(f"{path}: ") for line in message.splitlines())


def test_the_valid_fixture_is_valid(tmp_path: Path) -> None:
    manifest = load_manifest(_write(tmp_path, _valid()))
    assert [release.version for release in manifest.releases] == ["1.0", "1.1"]
    assert manifest.releases[0].released == date(2024, 1, 31)
    assert manifest.releases[1].images[0].sha256 is None


def test_vendor_must_match_the_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, _valid(), name="other")
    expected = "'acme' does not match the file name 'other.toml'"
    with pytest.raises(CatalogError, match=re.escape(expected)):
        load_manifest(path)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text('vendor = "acme"\n[[releases]\n')
    with pytest.raises(CatalogError, match="invalid TOML"):
        load_manifest(path)


def test_load_catalog_reports_every_bad_file(tmp_path: Path) -> None:
    good = _valid()
    _write(tmp_path, good)
    bad_digest = copy.deepcopy(good)
    bad_digest["vendor"] = "bravo"
    _image(bad_digest)["sha256"] = "0" * 10
    _write(tmp_path, bad_digest, name="bravo")
    (tmp_path / "charlie.toml").write_text("not toml at all = = \n")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    problems = caught.value.problems
    assert any(line.startswith(str(tmp_path / "bravo.toml")) for line in problems)
    assert any(line.startswith(str(tmp_path / "charlie.toml")) for line in problems)
    assert not any("acme.toml" in line for line in problems)


def test_empty_catalog_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no firmware manifests"):
        load_catalog(tmp_path)


def test_one_mistake_is_one_line(tmp_path: Path) -> None:
    manifest = _valid()
    del manifest["releases"][1]
    _image(manifest)["sha256"] = "ABCD"  # the only image of the only release is now invalid
    with pytest.raises(CatalogError) as caught:
        load_manifest(_write(tmp_path, manifest))
    assert caught.value.problems == [
        f"{tmp_path / 'acme.toml'}: releases[0].images[0].sha256: "
        "sha256 must be exactly 64 lowercase hex digits"
    ]
