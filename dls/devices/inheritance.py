"""Effective settings: merge sparse settings documents from system defaults down to the device.

Five levels, least to most specific: system defaults, tenant, device group, user, device.
Each contributes a *sparse* ``SettingsLayer``: a field left out inherits; a field set to
``null`` clears what the levels above said (a line set to ``null`` removes the line). The
more specific level wins per value, not per section: a tenant's VLAN id survives a device
that only turns the VLAN's priority up.

Lines merge per line index. ``line_defaults`` fills every line's unset fields (a tenant sets
its registrar once); a line's own value wins over ``line_defaults`` of the same or a less
specific level, and loses to ``line_defaults`` of a more specific one.

Every resolved value keeps the level it came from, so the admin console can show an
"effective config" and say why a value is what it is. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from dls.devices.settings import (
    DeviceSettings,
    Host,
    HostPort,
    LanguageTag,
    LineIndex,
    LineSettings,
    RawKey,
    RawValue,
    SafeText,
    Secret,
    TimeZoneName,
    Transport,
    VendorName,
    VersionString,
)
from dls.problems import problems_of

__all__ = [
    "MASK",
    "EffectiveValue",
    "FirmwareLayer",
    "Level",
    "LineLayer",
    "Resolution",
    "ResolutionError",
    "ResolvedValue",
    "SettingsLayer",
    "TimeLayer",
    "VlanLayer",
    "effective_view",
    "format_path",
    "resolve",
]

MASK = "********"
Path = tuple[str | int, ...]

# Raw vendor values are plain strings, so the view cannot know which of them are secrets; it
# masks by key name as a second line of defence (Yealink static.auto_provision.server.password).
# Numbered keys such as Grandstream P-values carry no such hint: secrets belong in the
# canonical fields, which are SecretStr.
_SECRET_NAME = re.compile(r"pass|pwd|pswd|secret|key|token", re.IGNORECASE)


class Level(IntEnum):
    """Where a settings document sits; a higher value is more specific and wins."""

    SYSTEM = 1
    TENANT = 2
    GROUP = 3
    USER = 4
    DEVICE = 5


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class LineLayer(_Layer):
    """A sparse ``LineSettings``; also the shape of ``line_defaults``."""

    enabled: bool | None = None
    label: SafeText | None = None
    display_name: SafeText | None = None
    sip_user: SafeText | None = None
    auth_user: SafeText | None = None
    password: Secret | None = None
    registrar: Host | None = None
    proxy: Host | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Transport | None = None
    outbound_proxy: HostPort | None = None


class TimeLayer(_Layer):
    ntp_servers: tuple[Host, ...] | None = Field(default=None, max_length=4)
    time_zone: TimeZoneName | None = None


class VlanLayer(_Layer):
    enabled: bool | None = None
    id: int | None = Field(default=None, ge=1, le=4094)
    priority: int | None = Field(default=None, ge=0, le=7)


class FirmwareLayer(_Layer):
    version: VersionString | None = None


class SettingsLayer(_Layer):
    """One level's sparse settings document (what an admin stored for that level)."""

    lines: dict[LineIndex, LineLayer | None] | None = None
    line_defaults: LineLayer | None = None
    time: TimeLayer | None = None
    language: LanguageTag | None = None
    admin_password: Secret | None = None
    vlan: VlanLayer | None = None
    poll_interval_minutes: int | None = Field(default=None, ge=1, le=43_200)
    firmware: FirmwareLayer | None = None
    raw: dict[VendorName, dict[RawKey, RawValue | None] | None] | None = None


@dataclass(frozen=True, slots=True)
class ResolvedValue:
    """A value that made it into the effective settings, and where it came from.

    ``source`` differs from ``path`` when a line field was filled from ``line_defaults``.
    """

    path: Path
    value: Any
    level: Level
    source: Path


@dataclass(frozen=True, slots=True)
class EffectiveValue:
    """One row of the effective-config view; ``level`` None means the model's default."""

    path: str
    value: Any
    level: Level | None
    source: str | None
    secret: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    settings: DeviceSettings
    provenance: Mapping[Path, ResolvedValue]
    cleared: Mapping[Path, Level]  # subtrees a level set to null, for the explanation


class ResolutionError(ValueError):
    """The merged layers do not form valid settings; one line per problem, naming the path."""


def resolve(layers: Iterable[tuple[Level, SettingsLayer]]) -> Resolution:
    """Merge ``layers`` (least specific first) into the device's effective settings.

    Pre: levels strictly increase (each level at most once, in order).
    Post: ``settings`` is a validated ``DeviceSettings``; every value that came from a
    layer has an entry in ``provenance``. Raises ``ResolutionError`` when the merge is
    incomplete, e.g. a line whose registrar no level provides.
    """
    state: dict[Path, ResolvedValue] = {}
    cleared: dict[Path, Level] = {}
    previous: Level | None = None
    for level, layer in layers:
        if previous is not None and level <= previous:
            raise ValueError(f"layers out of order: {level.name} after {previous.name}")
        previous = level
        for path, value in _operations(layer, ()):
            if value is _CLEAR:
                for key in [key for key in state if key[: len(path)] == path]:
                    del state[key]
                cleared[path] = level
            else:
                state[path] = ResolvedValue(path, value, level, path)

    provenance = {
        path: item for path, item in state.items() if path[0] not in ("lines", "line_defaults")
    }
    document: dict[str, Any] = {}
    for path, item in provenance.items():
        _put(document, path, item.value)
    lines: dict[int, dict[str, Any]] = {}
    for index in sorted(int(path[1]) for path in state if path[0] == "lines" and len(path) == 2):
        lines[index] = {}
        for field in LineSettings.model_fields:
            chosen = _line_field(state, index, field)
            if chosen is not None:
                lines[index][field] = chosen.value
                provenance[chosen.path] = chosen
    if lines:
        document["lines"] = lines
    try:
        settings = DeviceSettings.model_validate(document)
    except ValidationError as exc:
        raise ResolutionError(_describe(exc)) from None
    return Resolution(settings, provenance, cleared)


def effective_view(resolution: Resolution) -> list[EffectiveValue]:
    """Every value of the effective settings with its level; secrets masked.

    Values nobody set show the model's default with level None, so the view answers
    "what will the phone get" completely, not only "what did someone store".
    """
    rows = []
    for path, value in _leaves(resolution.settings.model_dump(), ()):
        item = resolution.provenance.get(path)
        secret = isinstance(value, SecretStr) or (
            path[0] == "raw" and bool(_SECRET_NAME.search(str(path[-1])))
        )
        shown = MASK if secret and value is not None else value
        rows.append(
            EffectiveValue(
                path=format_path(path),
                value=shown,
                level=item.level if item else None,
                source=format_path(item.source) if item else None,
                secret=secret,
            )
        )
    return rows


def format_path(path: Path) -> str:
    """Dotted form for display; raw vendor keys contain dots, so they are bracketed."""
    if path and path[0] == "raw" and len(path) == 3:
        return f"raw.{path[1]}[{path[2]}]"
    return ".".join(str(part) for part in path)


class _Clear:
    """Marker: the layer set this subtree to null."""


_CLEAR = _Clear()
_SUBTREES = ("time", "vlan", "firmware", "line_defaults")


def _operations(layer: BaseModel, prefix: Path) -> Iterator[tuple[Path, Any]]:
    """The layer's explicit statements in field order: (path, value or _CLEAR).

    Only fields the document actually contained count (``model_fields_set``), which is
    what tells "inherit" (absent) from "clear" (null).
    """
    for name in type(layer).model_fields:
        if name not in layer.model_fields_set:
            continue
        value = getattr(layer, name)
        path = (*prefix, name)
        if value is None:
            yield path, _CLEAR
        elif name == "lines":
            for index, line in value.items():
                line_path = (*path, index)
                if line is None:
                    yield line_path, _CLEAR
                else:
                    yield line_path, True  # the line exists from this level on
                    yield from _operations(line, line_path)
        elif name == "raw":
            for vendor, keys in value.items():
                if keys is None:
                    yield (*path, vendor), _CLEAR
                    continue
                for key, raw_value in keys.items():
                    yield (*path, vendor, key), _CLEAR if raw_value is None else raw_value
        elif not prefix and name in _SUBTREES:
            yield from _operations(value, path)
        else:
            yield path, value


def _line_field(
    state: Mapping[Path, ResolvedValue], index: int, field: str
) -> ResolvedValue | None:
    own = state.get(("lines", index, field))
    default = state.get(("line_defaults", field))
    if default is not None and (own is None or default.level > own.level):
        return ResolvedValue(("lines", index, field), default.value, default.level, default.path)
    return own


def _put(document: dict[str, Any], path: Sequence[str | int], value: Any) -> None:
    node: dict[Any, Any] = document
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _leaves(node: Any, prefix: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(node, dict) and (node or not prefix):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, node


def _describe(exc: ValidationError) -> str:
    return "\n".join(
        f"{problem.where or 'settings'}: {problem.message}" for problem in problems_of(exc)
    )
