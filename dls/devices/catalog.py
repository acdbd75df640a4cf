"""Which models dls accepts: the validated models of every vendor profile.

File-provisioned vendors come from their profiles in ``profiles/``; WPI vendors (Unify),
whose profiles map settings to items instead of files, list the device types they accept.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dls.firmware.catalog import model_key
from dls.provisioning.files.profiles import (
    DEFAULT_PROFILES_DIR,
    WPI_FAMILY,
    ProfileSet,
    load_profiles,
)

__all__ = ["ModelCatalog", "load_catalog"]


@dataclass(frozen=True, slots=True)
class _Entry:
    vendor: str
    name: str
    lines: int


@dataclass(slots=True)
class ModelCatalog:
    files: ProfileSet
    _by_name: dict[tuple[str, str], _Entry] = field(default_factory=dict)

    def add(self, vendor: str, name: str, aliases: tuple[str, ...], lines: int) -> None:
        entry = _Entry(vendor, name, lines)
        for spelling in (name, *aliases):
            self._by_name[(vendor, model_key(spelling))] = entry

    def lookup(self, vendor: str, model: str) -> tuple[str, str, int] | None:
        """(vendor, canonical model name, lines) if the model is validated, else None;
        the model spelt any way ``model_key`` allows."""
        entry = self._by_name.get((vendor.casefold(), model_key(model)))
        return (entry.vendor, entry.name, entry.lines) if entry else None

    def vendor_of(self, model: str) -> str | None:
        """The one vendor with a model of that name; None if none or ambiguous."""
        key = model_key(model)
        vendors = {e.vendor for (v, n), e in self._by_name.items() if n == key}
        return vendors.pop() if len(vendors) == 1 else None

    def vendors(self) -> list[str]:
        return sorted({entry.vendor for entry in self._by_name.values()})


def load_catalog(directory: Path = DEFAULT_PROFILES_DIR) -> ModelCatalog:
    files = load_profiles(directory)
    catalog = ModelCatalog(files)
    for profile in files:
        for model in profile.models:
            catalog.add(profile.vendor, model.name, model.aliases, model.lines)
    for path in sorted(directory.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if data.get("format", {}).get("family") != WPI_FAMILY:
            continue
        # A WPI profile lists its models by the device type the phones report.
        lines = int(data.get("lines", 1))
        for name in data.get("models", []):
            catalog.add(str(data["vendor"]), str(name), (), lines)
    return catalog
