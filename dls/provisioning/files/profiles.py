"""Vendor profiles: the data that makes a vendor, loaded from ``profiles/<vendor>.toml``.

A profile says how to recognise the vendor's devices (User-Agent patterns, file names), which
files they fetch and in which order, which format family renders them, which models are
validated, and how canonical settings map to vendor keys. Adding a model or a vendor of a
known format family is a profile change, not a code change.

Everything is checked at load: a malformed profile stops the server at start-up with one
line per problem naming file and key, instead of a wrong config reaching a phone later.

The mapping language, in short. A mapping entry turns one *canonical key* (``GlobalKey``,
``LineKey``, derived from ``DeviceSettings``) into one or more vendor keys::

    ntp_server_1 = "local_time.ntp_server1"                      # value as is
    transport = { key = "account.{line}.sip_server.1.transport_type",
                  values = { udp = "0", tcp = "1", tls = "2" } }  # value table
    time_zone = { key = "P64", convert = "posix" }                # converter, then table
    dst_start = [ { key = "...start_time", convert = "month-week-weekday-hour" },
                  { key = "local_time.dst_time_type", const = "1" } ]

``const`` emits a fixed value whenever the canonical value exists; ``format`` wraps the
result (``"admin:{value}"``). Line keys are templates over ``{line}`` (1-based index) and
``{provider}`` (1-based index of the line's distinct SIP server set); ``line_blocks`` list
explicit keys per line for vendors whose numbering has no pattern (Grandstream P-values).
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from dls.devices.settings import MAX_LINE_INDEX, TimeZoneName, VendorName
from dls.firmware.catalog import model_key
from dls.problems import problems_of
from dls.provisioning.files.vocabulary import (
    CONVERTER_KINDS,
    FAMILY_KEY_PATTERNS,
    FAMILY_ROLES,
    GLOBAL_KEY_KINDS,
    LINE_KEY_KINDS,
    PROVIDER_SCOPED_KEYS,
    Converter,
    FileRole,
    FileScope,
    FirmwareLocation,
    FormatFamily,
    GlobalKey,
    LineKey,
    MacCase,
    ValueKind,
    VersionKind,
)

__all__ = [
    "DEFAULT_PROFILES_DIR",
    "FileSpec",
    "FormatSpec",
    "KeyMapping",
    "ModelSpec",
    "ProfileError",
    "ProfileSet",
    "UserAgentPattern",
    "VendorMapping",
    "VendorProfile",
    "load_profile",
    "load_profiles",
    "template_fields",
]

# profiles/ sits next to the package in the source tree; a deployment may point elsewhere.
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[3] / "profiles"


_UA_GROUPS = frozenset({"model", "version", "mac", "hardware"})
_FILE_FIELDS = frozenset({"mac", "file_id"})
_LINE_FIELDS = frozenset({"line", "provider"})
_SAMPLE_FIELDS: dict[str, Any] = {
    "mac": "0",
    "file_id": "0",
    "line": 1,
    "provider": 1,
    "value": "v",
}


def template_fields(template: str) -> set[str]:
    """The ``{field}`` names of a str.format template; raises ValueError if malformed."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _check_template(template: str, allowed: frozenset[str], what: str) -> set[str]:
    fields = template_fields(template)
    if unknown := fields - allowed:
        raise ValueError(f"{what} {template!r}: unknown field(s) {sorted(unknown)}")
    try:
        template.format(**_SAMPLE_FIELDS)
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"{what} {template!r}: {exc}") from None
    return fields


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserAgentPattern(_Strict):
    """A regular expression over the User-Agent; named groups carry what it reveals."""

    name: str
    pattern: re.Pattern[str]
    version_kind: VersionKind = VersionKind.APPLICATION

    @model_validator(mode="after")
    def _groups(self) -> UserAgentPattern:
        groups = set(self.pattern.groupindex)
        if unknown := groups - _UA_GROUPS:
            raise ValueError(f"pattern {self.name}: unknown group(s) {sorted(unknown)}")
        if "model" not in groups:
            raise ValueError(f"pattern {self.name}: needs a (?P<model>...) group")
        return self


class FileSpec(_Strict):
    """One file the device requests; ``template`` over ``{mac}`` and ``{file_id}``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    template: str = Field(pattern=r"^[^/\s][^\s]*$")
    scope: FileScope
    role: FileRole
    includes: tuple[str, ...] = ()
    note: str = ""

    @model_validator(mode="after")
    def _shape(self) -> FileSpec:
        fields = _check_template(self.template, _FILE_FIELDS, "template")
        if ".." in self.template:
            raise ValueError(f"template {self.template!r}: '..' is not allowed")
        if self.scope is FileScope.DEVICE and "mac" not in fields:
            raise ValueError(f"file {self.name}: a device file's name must contain {{mac}}")
        if self.scope is FileScope.COMMON and "mac" in fields:
            raise ValueError(f"file {self.name}: a common file's name cannot contain {{mac}}")
        if (self.role is FileRole.BOOT) != bool(self.includes):
            raise ValueError(f"file {self.name}: boot files, and only they, list includes")
        for include in self.includes:
            used = _check_template(include, _FILE_FIELDS, "include")
            if self.scope is FileScope.COMMON and "mac" in used:
                raise ValueError(f"file {self.name}: a common file cannot include {{mac}} files")
        return self


class ModelSpec(_Strict):
    """A validated model. ``lines`` is SIP accounts (one per FXS port on an ATA)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.+-]*$")
    aliases: tuple[str, ...] = ()
    file_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    lines: int = Field(ge=1, le=MAX_LINE_INDEX)
    fxs_ports: int = Field(default=0, ge=0, le=64)
    mapping: str = "default"
    note: str = ""


def _as_entries(value: Any) -> Any:
    """Shorthand: a bare string is ``{key = ...}``; a single table is a one-entry list."""
    items = value if isinstance(value, list | tuple) else [value]
    return [{"key": item} if isinstance(item, str) else item for item in items]


class KeyMapping(_Strict):
    key: str = Field(min_length=1)
    convert: Converter = Converter.TEXT
    values: dict[str, str] | None = None
    const: str | None = None
    format: str | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> KeyMapping:
        if self.const is not None and (
            self.values is not None or self.format is not None or self.convert is not Converter.TEXT
        ):
            raise ValueError(f"key {self.key}: 'const' excludes convert, values and format")
        if self.format is not None:
            _check_template(self.format, frozenset({"value"}), "format")
        return self


KeyMappings = Annotated[tuple[KeyMapping, ...], BeforeValidator(_as_entries)]


class VendorMapping(_Strict):
    """Canonical keys to vendor keys for one group of models."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    global_keys: dict[GlobalKey, KeyMappings] = Field(default_factory=dict, alias="global")
    line: dict[LineKey, KeyMappings] = Field(default_factory=dict)
    line_blocks: tuple[dict[LineKey, KeyMappings], ...] = ()

    def line_entries(self, index: int) -> dict[LineKey, tuple[KeyMapping, ...]]:
        """The entries for line ``index`` (1-based): its block over the templates."""
        entries = dict(self.line)
        if index <= len(self.line_blocks):
            entries.update(self.line_blocks[index - 1])
        return entries

    def covers(self, index: int) -> bool:
        return bool(self.line) or index <= len(self.line_blocks)

    def all_entries(self) -> Iterator[tuple[GlobalKey | LineKey, KeyMapping, str]]:
        """(canonical key, entry, section) for every entry, for validation."""
        for global_key, entries in self.global_keys.items():
            yield from ((global_key, entry, "global") for entry in entries)
        for line_key, entries in self.line.items():
            yield from ((line_key, entry, "line") for entry in entries)
        for number, block in enumerate(self.line_blocks, start=1):
            for line_key, entries in block.items():
                yield from ((line_key, entry, f"line_blocks[{number}]") for entry in entries)


class KeyValueFormat(_Strict):
    family: Literal["key-value"]
    header: str  # first line of every file
    include_line: str  # boot files: one line per included file, over {file}


class XmlAttributesFormat(_Strict):
    family: Literal["xml-attributes"]
    root: str
    set_flag_prefix: str | None = None  # keys under it also get "<key>.set" and "<prefix>set"
    master_root: str
    master_includes_attribute: str
    master_firmware_attribute: str


class XmlElementsFormat(_Strict):
    family: Literal["xml-elements"]
    root: str
    section: str
    perm: str
    firmware_root: str


class PValuesFormat(_Strict):
    family: Literal["p-values"]
    provision_version: str
    config_version: str
    include_mac: bool


class FlatProfileFormat(_Strict):
    family: Literal["flat-profile"]
    root: str


class GigasetFormat(_Strict):
    family: Literal["gigaset-provisioning"]
    root_attributes: dict[str, str]
    handset_oper: str
    handset_id: str  # over {line}
    handset_params: dict[str, str]


class FanvilFormat(_Strict):
    family: Literal["fanvil-xml"]
    root: str
    version_element: str
    version: str


FormatSpec = Annotated[
    KeyValueFormat
    | XmlAttributesFormat
    | XmlElementsFormat
    | PValuesFormat
    | FlatProfileFormat
    | GigasetFormat
    | FanvilFormat,
    Field(discriminator="family"),
]


class VendorProfile(_Strict):
    """One vendor's data, validated as a whole (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(alias="schema")
    vendor: VendorName
    display_name: str
    format: FormatSpec
    mac_case: MacCase
    firmware_key: str
    firmware_location: FirmwareLocation
    user_agents: tuple[UserAgentPattern, ...] = Field(min_length=1)
    files: tuple[FileSpec, ...] = Field(min_length=1)
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    mappings: dict[str, VendorMapping] = Field(min_length=1)
    time_zones: dict[TimeZoneName, str] = Field(default_factory=dict)
    sources: tuple[str, ...] = ()

    @property
    def family(self) -> FormatFamily:
        return FormatFamily(self.format.family)

    def model(self, name: str) -> ModelSpec | None:
        """The validated model called ``name`` or one of its aliases, spelt any way
        ``model_key`` allows."""
        by_name = self._models_by_name
        return by_name.get(name.casefold()) or by_name.get(model_key(name))

    @functools.cached_property
    def _models_by_name(self) -> dict[str, ModelSpec]:
        """Every poll asks for its device's model, some more than once, as its
        User-Agent spells it: the case-folded spellings answer that without the key's
        translation."""
        found: dict[str, ModelSpec] = {}
        for model in self.models:
            for name in (model.name, *model.aliases):
                found.setdefault(name.casefold(), model)
                found.setdefault(model_key(name), model)
        return found

    def file(self, name: str) -> FileSpec:
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(f"profile {self.vendor} has no file {name!r}")

    def mapping_for(self, model: ModelSpec) -> VendorMapping:
        return self.mappings[model.mapping]

    def render_mac(self, mac: str) -> str:
        """``mac`` (12 lower-case hex digits) as this vendor writes it in file names."""
        return mac.upper() if self.mac_case is MacCase.UPPER else mac

    def file_name(self, spec: FileSpec, model: ModelSpec, mac: str | None) -> str | None:
        """The file's name for this device; None when it does not apply to the model."""
        fields = template_fields(spec.template)
        if "file_id" in fields and model.file_id is None:
            return None
        return spec.template.format(mac=self.render_mac(mac or ""), file_id=model.file_id or "")

    @model_validator(mode="after")
    def _consistent(self) -> VendorProfile:
        problems = [*self._check_files(), *self._check_models(), *self._check_mappings()]
        if not FAMILY_KEY_PATTERNS[self.family].match(self.firmware_key):
            problems.append(f"firmware_key {self.firmware_key!r}: not a {self.family} key")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _check_files(self) -> Iterator[str]:
        for attribute in ("name", "template"):
            seen = [getattr(spec, attribute) for spec in self.files]
            if dupes := {value for value in seen if seen.count(value) > 1}:
                yield f"files: duplicate {attribute} {sorted(dupes)}"
        has_file_ids = any(model.file_id for model in self.models)
        for spec in self.files:
            if spec.role not in FAMILY_ROLES[self.family]:
                yield f"file {spec.name}: role {spec.role} is not supported by {self.family}"
            uses = template_fields(spec.template).union(*map(template_fields, spec.includes))
            if "file_id" in uses and not has_file_ids:
                yield f"file {spec.name}: uses {{file_id}} but no model has a file_id"

    def _check_models(self) -> Iterator[str]:
        # A spelling that names two models would make lookups depend on their order; an
        # alias that spells its own model's name again is harmless (documents a spelling).
        named: dict[str, set[str]] = {}
        for model in self.models:
            for name in (model.name, *model.aliases):
                named.setdefault(model_key(name), set()).add(model.name)
        if dupes := {key for key, models in named.items() if len(models) > 1}:
            yield f"models: duplicate name or alias {sorted(dupes)}"
        for model in self.models:
            if model.mapping not in self.mappings:
                yield f"model {model.name}: no mapping {model.mapping!r}"
                continue
            mapping = self.mappings[model.mapping]
            if not mapping.covers(model.lines):
                yield (
                    f"model {model.name}: mapping {model.mapping!r} has keys for "
                    f"{len(mapping.line_blocks)} line(s), the model has {model.lines}"
                )

    def _check_mappings(self) -> Iterator[str]:
        key_pattern = FAMILY_KEY_PATTERNS[self.family]
        for mapping_name, mapping in self.mappings.items():
            for canonical, entry, section in mapping.all_entries():
                where = f"mapping {mapping_name} {section} {canonical}"
                try:
                    yield from self._check_entry(canonical, entry, section, key_pattern, where)
                except ValueError as exc:
                    yield f"{where}: {exc}"

    def _check_entry(
        self,
        canonical: GlobalKey | LineKey,
        entry: KeyMapping,
        section: str,
        key_pattern: re.Pattern[str],
        where: str,
    ) -> Iterator[str]:
        allowed = frozenset() if section == "global" else _LINE_FIELDS
        fields = _check_template(entry.key, allowed, "key")
        if section == "line" and not fields:
            yield f"{where}: key {entry.key!r} needs {{line}} or {{provider}}"
        if "provider" in fields and "line" not in fields and canonical not in PROVIDER_SCOPED_KEYS:
            yield f"{where}: {canonical} differs per line; {{provider}} alone would merge lines"
        if not key_pattern.match(entry.key.format(**_SAMPLE_FIELDS)):
            yield f"{where}: {entry.key!r} is not a {self.family} key"
        if entry.const is not None:
            return
        kind = (
            GLOBAL_KEY_KINDS[canonical]
            if isinstance(canonical, GlobalKey)
            else LINE_KEY_KINDS[canonical]
        )
        if kind not in CONVERTER_KINDS[entry.convert]:
            yield f"{where}: converter {entry.convert} does not apply to a {kind} value"
        needed = _required_values(kind, entry.convert)
        if needed and (entry.values is None or not needed <= entry.values.keys()):
            yield f"{where}: values must cover {sorted(needed)}"
        if entry.convert is Converter.ZONE_TABLE and not self.time_zones:
            yield f"{where}: converter zone-table needs a [time_zones] table"


def _required_values(kind: ValueKind, converter: Converter) -> set[str]:
    if converter is Converter.LAST_IN_MONTH or (
        kind is ValueKind.BOOL and converter is Converter.TEXT
    ):
        return {"true", "false"}
    if kind is ValueKind.TRANSPORT and converter is Converter.TEXT:
        return {"udp", "tcp", "tls"}
    return set()


WPI_FAMILY = "wpi-items"


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file and every problem."""


@dataclass(frozen=True, slots=True)
class ProfileSet:
    """All loaded profiles by vendor name, in a stable (alphabetical) order."""

    profiles: Mapping[str, VendorProfile]

    def __iter__(self) -> Iterator[VendorProfile]:
        return iter(self.profiles.values())

    def __len__(self) -> int:
        return len(self.profiles)

    def __getitem__(self, vendor: str) -> VendorProfile:
        return self.profiles[vendor]

    def get(self, vendor: str) -> VendorProfile | None:
        return self.profiles.get(vendor)


def load_profile(path: Path) -> VendorProfile:
    """Read and validate one profile; the vendor name must equal the file's stem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"profile {path.name}: {exc}") from None
    try:
        profile = VendorProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_describe(path, exc)) from None
    if profile.vendor != path.stem:
        raise ProfileError(
            f"profile {path.name}: vendor {profile.vendor!r} must match the file name"
        )
    return profile


def load_profiles(directory: Path = DEFAULT_PROFILES_DIR) -> ProfileSet:
    """Load every ``*.toml`` in ``directory``; the first malformed one raises ProfileError."""
    paths = [path for path in sorted(directory.glob("*.toml")) if not _speaks_wpi(path)]
    if not paths:
        raise ProfileError(f"no profiles in {directory}")
    return ProfileSet({path.stem: load_profile(path) for path in paths})


def _speaks_wpi(path: Path) -> bool:
    """Unify's profile maps settings to WPI items, not files; its own loader reads it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # let load_profile report it
    return data.get("format", {}).get("family") == WPI_FAMILY


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for problem in problems_of(exc):
        where = f"{problem.where}: " if problem.where else ""
        # Cross-field checks report every problem at once, joined by "; ".
        lines += [f"profile {path.name}: {where}{m}" for m in problem.message.split("; ")]
    return "\n".join(lines)
