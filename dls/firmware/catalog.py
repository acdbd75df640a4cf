"""The firmware catalog: ``firmware_catalog/<vendor>.toml``, loaded and validated.

Each manifest lists real, public releases of one vendor (schema: ``firmware_catalog/
README.md``). Validation happens once, at load: unknown keys, malformed digests, a vendor
name that does not match its file, duplicate versions, or a model listed twice in one
release all raise :class:`CatalogError` with one line per problem, naming file and field.
After that the catalog is immutable and lookups are dictionary hits.

The catalog never invents what a source did not publish: ``sha256`` is optional and
``checksum_known`` must say so explicitly, so "unknown" cannot be confused with "forgot".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    model_validator,
)

from dls.problems import problems_of

__all__ = [
    "DEFAULT_CATALOG_DIR",
    "CatalogError",
    "FirmwareCatalog",
    "FirmwareImage",
    "FirmwareMatch",
    "FirmwareRelease",
    "Packaging",
    "VendorManifest",
    "load_catalog",
    "load_manifest",
    "model_key",
]

# The data directory sits beside the package in the source tree (DESIGN.md: data apart
# from code). Callers that run from elsewhere pass their own directory.
DEFAULT_CATALOG_DIR = Path(__file__).resolve().parents[2] / "firmware_catalog"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_MODEL_NOISE = re.compile(r"[\s_\-]+")


def model_key(model: str) -> str:
    """Comparison key for model names: case, spaces, ``_`` and ``-`` do not count.

    Detection sees ``VVX_401`` (Poly UA), ``T46U`` (Yealink UA) or ``OpenScape Desk Phone
    CP210`` (WPI ``device-type``); manifests write the vendor's spelling.
    """
    return _MODEL_NOISE.sub("", model).casefold()


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError("sha256 must be exactly 64 lowercase hex digits")
    return value


def _sha1(value: str) -> str:
    if not _SHA1.fullmatch(value):
        raise ValueError("sha1 must be exactly 40 lowercase hex digits")
    return value


def _bare_file_name(value: str) -> str:
    # The name may end up in a URL path or a download directory: no separators, no dots-only.
    if "/" in value or "\\" in value or "\x00" in value or value in {".", ".."}:
        raise ValueError("file must be a bare file name without directories")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]
Sha1 = Annotated[str, AfterValidator(_sha1)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
FileName = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_bare_file_name)
]
Version = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^\S(?:[^\r\n\t]*\S)?$")
]


class Packaging(StrEnum):
    """How the vendor ships the file."""

    IMAGE = "image"  # the file is what the device downloads
    ZIP = "zip"  # an archive; the device image is inside (Poly split zips, Grandstream)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirmwareImage(_Strict):
    """One file of a release and the models it is for."""

    models: tuple[Text, ...] = Field(min_length=1)
    file: FileName | None = None
    packaging: Packaging = Packaging.IMAGE
    size: int | None = Field(default=None, gt=0)
    sha256: Sha256 | None = None
    checksum_known: bool
    checksum_source: HttpUrl | None = None
    sha1: Sha1 | None = None
    download_url: HttpUrl | None = None
    source: HttpUrl | None = None

    @model_validator(mode="after")
    def _checksum_is_declared(self) -> FirmwareImage:
        if self.checksum_known and self.sha256 is None:
            raise ValueError("checksum_known = true needs a sha256")
        if not self.checksum_known and self.sha256 is not None:
            raise ValueError("a sha256 is given, so checksum_known must be true")
        if self.sha256 is not None and self.checksum_source is None:
            raise ValueError("a published sha256 needs checksum_source, the page publishing it")
        keys = [model_key(model) for model in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"models lists a model twice: {list(self.models)}")
        return self


class FirmwareRelease(_Strict):
    """One firmware version of a vendor, with one or more images."""

    version: Version
    released: date | None = None
    notes: Text
    source: HttpUrl
    images: tuple[FirmwareImage, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _model_in_one_image(self) -> FirmwareRelease:
        seen: dict[str, str] = {}
        for image in self.images:
            for model in image.models:
                key = model_key(model)
                if key in seen:
                    raise ValueError(
                        f"model {model!r} is in two images of release {self.version!r}"
                    )
                seen[key] = model
        return self


class VendorManifest(_Strict):
    """The contents of one ``<vendor>.toml``."""

    vendor: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$", max_length=32)]
    releases: tuple[FirmwareRelease, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _versions_unique(self) -> VendorManifest:
        seen: set[str] = set()
        for release in self.releases:
            key = release.version.casefold()
            if key in seen:
                raise ValueError(f"duplicate version {release.version!r}")
            seen.add(key)
        return self


class CatalogError(Exception):
    """Manifests could not be read or are invalid; one line per problem, naming file and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True)
class FirmwareMatch:
    """The answer to a lookup: the release and the image for that model."""

    vendor: str
    release: FirmwareRelease
    image: FirmwareImage


class FirmwareCatalog:
    """All manifests, indexed by (vendor, version, model key). Immutable after building."""

    __slots__ = ("_index", "_manifests")

    def __init__(self, manifests: Mapping[str, VendorManifest]) -> None:
        self._manifests = MappingProxyType(dict(manifests))
        index: dict[tuple[str, str, str], FirmwareMatch] = {}
        for vendor, manifest in self._manifests.items():
            for release in manifest.releases:
                for image in release.images:
                    match = FirmwareMatch(vendor, release, image)
                    for model in image.models:
                        index[(vendor, release.version.casefold(), model_key(model))] = match
        self._index = index

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(sorted(self._manifests))

    def manifest(self, vendor: str) -> VendorManifest | None:
        return self._manifests.get(vendor)

    def releases(self, vendor: str) -> tuple[FirmwareRelease, ...]:
        manifest = self._manifests.get(vendor)
        return manifest.releases if manifest is not None else ()

    def find(self, vendor: str, model: str, version: str) -> FirmwareMatch | None:
        """The release ``version`` of ``vendor`` and its image for ``model``, if listed.

        Vendor is matched exactly (manifest ids are lowercase), the version ignoring case,
        the model by :func:`model_key`.
        """
        return self._index.get((vendor, version.strip().casefold(), model_key(model)))

    def for_model(self, vendor: str, model: str) -> Iterator[FirmwareMatch]:
        """Every listed release of ``vendor`` that has an image for ``model``."""
        key = model_key(model)
        for release in self.releases(vendor):
            for image in release.images:
                if any(model_key(candidate) == key for candidate in image.models):
                    yield FirmwareMatch(vendor, release, image)
                    break


def _describe(error: ValidationError) -> list[str]:
    found = problems_of(error)
    # pydantic counts a tuple's length after dropping invalid items, so one bad image also
    # reports "images: should have at least 1 item"; that echo only hides the real line.
    failed = [problem.loc for problem in found]
    problems = []
    for problem in found:
        loc = problem.loc
        if problem.type == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in failed
        ):
            continue
        where = ""
        for part in loc:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
        problems.append(f"{where}: {problem.message}" if where else problem.message)
    return problems


def load_manifest(path: Path) -> VendorManifest:
    """Read and validate one manifest; raise :class:`CatalogError` on any problem."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise CatalogError([f"{path}: cannot read: {error.strerror or error}"]) from error
    except tomllib.TOMLDecodeError as error:
        raise CatalogError([f"{path}: invalid TOML: {error}"]) from error
    try:
        manifest = VendorManifest.model_validate(data)
    except ValidationError as error:
        raise CatalogError([f"{path}: {problem}" for problem in _describe(error)]) from error
    if manifest.vendor != path.stem:
        raise CatalogError(
            [f"{path}: vendor: {manifest.vendor!r} does not match the file name {path.name!r}"]
        )
    return manifest


def load_catalog(directory: Path = DEFAULT_CATALOG_DIR) -> FirmwareCatalog:
    """Load every ``*.toml`` in ``directory``; the problems of all files are reported at once."""
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise CatalogError([f"{directory}: no firmware manifests (*.toml) found"])
    manifests: dict[str, VendorManifest] = {}
    problems: list[str] = []
    for path in paths:
        try:
            manifests[path.stem] = load_manifest(path)
        except CatalogError as error:
            problems.extend(error.problems)
    if problems:
        raise CatalogError(problems)
    return FirmwareCatalog(manifests)
