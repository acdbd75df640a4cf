"""The mapping engine: canonical values to the vendor's flat keys, as the profile says.

Shared by every renderer: a renderer only lays the resulting flat ``{vendor key: value}``
out in its format. What goes into which scope is decided here and nowhere else:

- common files get the non-secret *global* keys only: no line, no secret, no raw key;
- device files get global keys, the lines the model has, then the device's raw keys for
  this vendor (raw keys win over mapped ones: an admin asked for exactly that value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dls.provisioning.files.profiles import KeyMapping
from dls.provisioning.files.render.base import RenderError, RenderRequest
from dls.provisioning.files.render.canonical import canonical_values
from dls.provisioning.files.render.converters import Unrepresentable, convert
from dls.provisioning.files.vocabulary import (
    FAMILY_KEY_PATTERNS,
    GLOBAL_KEY_KINDS,
    LINE_KEY_KINDS,
    SECRET_KEYS,
    FileRole,
    GlobalKey,
    LineKey,
    ValueKind,
)

__all__ = ["Omission", "VendorValues", "vendor_values"]


@dataclass(frozen=True, slots=True)
class Omission:
    """A value that was not written, and why (for the effective-config view and logs)."""

    canonical: str
    key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class VendorValues:
    values: dict[str, str]  # vendor key -> value, in mapping order
    secret_keys: frozenset[str]  # vendor keys that hold a secret
    omitted: tuple[Omission, ...]
    lines: tuple[int, ...]  # line indices written


def vendor_values(request: RenderRequest) -> VendorValues:
    """The flat vendor keys for ``request``'s file (scope rules in the module docstring)."""
    profile, model = request.profile, request.model
    mapping = profile.mapping_for(model)
    canonical = canonical_values(
        request.settings,
        firmware_url=request.firmware_url,
        firmware_descriptor_url=_firmware_descriptor_url(request),
        base_url=request.base_url,
    )
    builder = _Builder(profile.time_zones)
    builder.omitted.extend(Omission("time_zone", None, problem) for problem in canonical.problems)
    for global_key, entries in mapping.global_keys.items():
        value = canonical.global_values.get(global_key)
        if value is None or (request.is_common and global_key in SECRET_KEYS):
            continue
        for entry in entries:
            builder.emit(global_key, entry, entry.key, value)
    written = []
    if not request.is_common:
        for index, line in canonical.lines.items():
            if index > model.lines:
                builder.omit(f"lines.{index}", None, f"{model.name} has {model.lines} line(s)")
                continue
            written.append(index)
            fields = {"line": index, "provider": line[LineKey.PROVIDER]}
            for line_key, entries in mapping.line_entries(index).items():
                value = line.get(line_key)
                if value is None:
                    continue
                for entry in entries:
                    builder.emit(line_key, entry, entry.key.format(**fields), value)
        builder.raw(
            request.settings.raw.get(profile.vendor, {}), FAMILY_KEY_PATTERNS[profile.family]
        )
    return VendorValues(
        dict(builder.values), frozenset(builder.secret_keys), tuple(builder.omitted), tuple(written)
    )


def _firmware_descriptor_url(request: RenderRequest) -> str | None:
    if request.base_url is None:
        return None
    profile = request.profile
    for spec in profile.files:
        if spec.role is FileRole.FIRMWARE:
            name = profile.file_name(spec, request.model, request.mac)
            if name is not None:
                return request.base_url + name
    return None


class _Builder:
    def __init__(self, time_zones: Mapping[str, str]) -> None:
        self.time_zones = time_zones
        self.values: dict[str, str] = {}
        self.secret_keys: set[str] = set()
        self.omitted: list[Omission] = []

    def omit(self, canonical: str, key: str | None, reason: str) -> None:
        self.omitted.append(Omission(canonical, key, reason))

    def emit(
        self, canonical: GlobalKey | LineKey, entry: KeyMapping, key: str, value: object
    ) -> None:
        text = self._vendor_text(canonical, entry, key, value)
        if text is None:
            return
        existing = self.values.get(key)
        if existing is not None and existing != text:
            # Two canonical values on one vendor key: a profile bug, never guess a winner.
            raise RenderError(f"vendor key {key} would get two different values")
        self.values[key] = text
        if canonical in SECRET_KEYS:
            self.secret_keys.add(key)

    def raw(self, raw: Mapping[str, str], pattern: re.Pattern[str]) -> None:
        for key, value in raw.items():
            if not pattern.match(key):
                self.omit(f"raw[{key}]", key, "not a key of this format family")
                continue
            self.values[key] = value

    def _vendor_text(
        self, canonical: GlobalKey | LineKey, entry: KeyMapping, key: str, value: object
    ) -> str | None:
        if entry.const is not None:
            return entry.const
        try:
            text = convert(entry.convert, value, time_zones=self.time_zones)
        except Unrepresentable as exc:
            self.omit(str(canonical), key, str(exc))
            return None
        if text is None:
            return None
        if entry.values is not None:
            looked_up = entry.values.get(text)
            if looked_up is None and _kind(canonical) is ValueKind.LANGUAGE:
                looked_up = entry.values.get(text.split("-")[0])
            if looked_up is None:
                self.omit(str(canonical), key, f"no vendor value for {text!r}")
                return None
            text = looked_up
        if entry.format is not None:
            text = entry.format.format(value=text)
        return text


def _kind(canonical: GlobalKey | LineKey) -> ValueKind:
    if isinstance(canonical, LineKey):
        return LINE_KEY_KINDS[canonical]
    return GLOBAL_KEY_KINDS[canonical]
