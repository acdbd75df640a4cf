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
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from dls.devices.settings import MAX_LINE_INDEX, TimeZoneName, VendorName
from dls.firmware.catalog import model_key

__all__ = [
    "DEFAULT_PROFILES_DIR",
    "FAMILY_KEY_PATTERNS",
    "FAMILY_ROLES",
    "GLOBAL_KEY_KINDS",
    "LINE_KEY_KINDS",
    "PROVIDER_SCOPED_KEYS",
    "SECRET_KEYS",
    "Converter",
    "FileRole",
    "FileScope",
    "FileSpec",
    "FirmwareLocation",
    "FormatFamily",
    "FormatSpec",
    "GlobalKey",
    "KeyMapping",
    "LineKey",
    "MacCase",
    "ModelSpec",
    "ProfileError",
    "ProfileSet",
    "UserAgentPattern",
    "ValueKind",
    "VendorMapping",
    "VendorProfile",
    "VersionKind",
    "load_profile",
    "load_profiles",
    "template_fields",
]

# profiles/ sits next to the package in the source tree; a deployment may point elsewhere.
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[3] / "profiles"


class FormatFamily(StrEnum):
    """One renderer per family; a vendor picks its family in the profile."""

    KEY_VALUE = "key-value"  # Yealink
    XML_ATTRIBUTES = "xml-attributes"  # Poly
    XML_ELEMENTS = "xml-elements"  # Snom: elements with idx/perm
    P_VALUES = "p-values"  # Grandstream
    FLAT_PROFILE = "flat-profile"  # Cisco SPA
    GIGASET_PROVISIONING = "gigaset-provisioning"  # Gigaset N870
    FANVIL_XML = "fanvil-xml"  # Fanvil sysConf


class MacCase(StrEnum):
    """Case of the MAC in file names; EITHER matches both and renders lower case."""

    LOWER = "lower"
    UPPER = "upper"
    EITHER = "either"


class FileScope(StrEnum):
    COMMON = "common"  # same bytes for every device of the model: never a secret in it
    DEVICE = "device"  # names the MAC; only for an identified, trusted device


class FileRole(StrEnum):
    BOOT = "boot"  # lists the files to fetch next (Yealink .boot, Poly master)
    CONFIG = "config"  # settings
    FIRMWARE = "firmware"  # points at the firmware image (Snom firmware_status target)
    UNSERVED = "unserved"  # requested by the device, dls has no content: answer 404
    UPLOAD = "upload"  # the device PUTs it (Poly logs and overrides)


class VersionKind(StrEnum):
    """What the version in a User-Agent is. Poly's BootROM says Type/Updater."""

    APPLICATION = "application"
    UPDATER = "updater"


class FirmwareLocation(StrEnum):
    """What the vendor's firmware key holds, for the firmware delivery code."""

    IMAGE_URL = "image-url"  # the URL of the image itself
    DIRECTORY = "directory"  # a directory; the device appends its own image name


class ValueKind(StrEnum):
    TEXT = "text"
    SECRET = "secret"  # noqa: S105 - a kind name, not a password
    BOOL = "bool"
    INT = "int"
    TRANSPORT = "transport"
    LANGUAGE = "language"
    URL = "url"
    ZONE = "zone"  # an IANA zone; converters derive offsets and rules from tzdata
    TRANSITION = "transition"  # a DST start or end rule (month, week, weekday, time)


class GlobalKey(StrEnum):
    NTP_SERVER_1 = "ntp_server_1"
    NTP_SERVER_2 = "ntp_server_2"
    TIME_ZONE = "time_zone"
    DST_OBSERVED = "dst_observed"
    DST_SAVE_MINUTES = "dst_save_minutes"
    DST_START = "dst_start"
    DST_END = "dst_end"
    LANGUAGE = "language"
    ADMIN_PASSWORD = "admin_password"  # noqa: S105 - a key name
    VLAN_ENABLED = "vlan_enabled"
    VLAN_ID = "vlan_id"
    VLAN_PRIORITY = "vlan_priority"
    POLL_ENABLED = "poll_enabled"
    POLL_INTERVAL_MINUTES = "poll_interval_minutes"
    FIRMWARE_URL = "firmware_url"
    FIRMWARE_VERSION = "firmware_version"
    FIRMWARE_DESCRIPTOR_URL = "firmware_descriptor_url"  # URL of the profile's FIRMWARE file
    PROVISIONING_BASE_URL = "provisioning_base_url"  # where this vendor's files are served


class LineKey(StrEnum):
    ENABLED = "enabled"
    LABEL = "label"
    DISPLAY_NAME = "display_name"
    SIP_USER = "sip_user"
    AUTH_USER = "auth_user"  # the SIP user when no auth user is set
    AUTH_USER_SET = "auth_user_set"
    PASSWORD = "password"  # noqa: S105 - a key name
    REGISTRAR = "registrar"
    REGISTRAR_PORT = "registrar_port"
    REGISTRAR_HOST_PORT = "registrar_host_port"  # "host:port"
    PROXY = "proxy"  # the registrar when no proxy is set
    PROXY_HOST_PORT = "proxy_host_port"
    TRANSPORT = "transport"
    OUTBOUND_PROXY = "outbound_proxy"
    OUTBOUND_PROXY_SET = "outbound_proxy_set"
    OUTBOUND_PROXY_HOST = "outbound_proxy_host"
    OUTBOUND_PROXY_PORT = "outbound_proxy_port"  # the line's port when the proxy names none
    OUTBOUND_URI = "outbound_uri"  # "host[:port];transport=udp", outbound proxy or proxy
    PROVIDER = "provider"  # 1-based index of the line's SIP server set


GLOBAL_KEY_KINDS: dict[GlobalKey, ValueKind] = {
    GlobalKey.NTP_SERVER_1: ValueKind.TEXT,
    GlobalKey.NTP_SERVER_2: ValueKind.TEXT,
    GlobalKey.TIME_ZONE: ValueKind.ZONE,
    GlobalKey.DST_OBSERVED: ValueKind.BOOL,
    GlobalKey.DST_SAVE_MINUTES: ValueKind.INT,
    GlobalKey.DST_START: ValueKind.TRANSITION,
    GlobalKey.DST_END: ValueKind.TRANSITION,
    GlobalKey.LANGUAGE: ValueKind.LANGUAGE,
    GlobalKey.ADMIN_PASSWORD: ValueKind.SECRET,
    GlobalKey.VLAN_ENABLED: ValueKind.BOOL,
    GlobalKey.VLAN_ID: ValueKind.INT,
    GlobalKey.VLAN_PRIORITY: ValueKind.INT,
    GlobalKey.POLL_ENABLED: ValueKind.BOOL,
    GlobalKey.POLL_INTERVAL_MINUTES: ValueKind.INT,
    GlobalKey.FIRMWARE_URL: ValueKind.URL,
    GlobalKey.FIRMWARE_VERSION: ValueKind.TEXT,
    GlobalKey.FIRMWARE_DESCRIPTOR_URL: ValueKind.URL,
    GlobalKey.PROVISIONING_BASE_URL: ValueKind.URL,
}

LINE_KEY_KINDS: dict[LineKey, ValueKind] = {
    LineKey.ENABLED: ValueKind.BOOL,
    LineKey.LABEL: ValueKind.TEXT,
    LineKey.DISPLAY_NAME: ValueKind.TEXT,
    LineKey.SIP_USER: ValueKind.TEXT,
    LineKey.AUTH_USER: ValueKind.TEXT,
    LineKey.AUTH_USER_SET: ValueKind.BOOL,
    LineKey.PASSWORD: ValueKind.SECRET,
    LineKey.REGISTRAR: ValueKind.TEXT,
    LineKey.REGISTRAR_PORT: ValueKind.INT,
    LineKey.REGISTRAR_HOST_PORT: ValueKind.TEXT,
    LineKey.PROXY: ValueKind.TEXT,
    LineKey.PROXY_HOST_PORT: ValueKind.TEXT,
    LineKey.TRANSPORT: ValueKind.TRANSPORT,
    LineKey.OUTBOUND_PROXY: ValueKind.TEXT,
    LineKey.OUTBOUND_PROXY_SET: ValueKind.BOOL,
    LineKey.OUTBOUND_PROXY_HOST: ValueKind.TEXT,
    LineKey.OUTBOUND_PROXY_PORT: ValueKind.INT,
    LineKey.OUTBOUND_URI: ValueKind.TEXT,
    LineKey.PROVIDER: ValueKind.INT,
}

SECRET_KEYS: frozenset[GlobalKey | LineKey] = frozenset(
    {GlobalKey.ADMIN_PASSWORD, LineKey.PASSWORD}
)

# Keys whose value is the same for every line of one provider (server set), so a key
# template over {provider} alone cannot receive two different values.
PROVIDER_SCOPED_KEYS: frozenset[LineKey] = frozenset(
    {
        LineKey.REGISTRAR,
        LineKey.REGISTRAR_PORT,
        LineKey.REGISTRAR_HOST_PORT,
        LineKey.PROXY,
        LineKey.PROXY_HOST_PORT,
        LineKey.TRANSPORT,
        LineKey.OUTBOUND_PROXY,
        LineKey.OUTBOUND_PROXY_SET,
        LineKey.OUTBOUND_PROXY_HOST,
        LineKey.OUTBOUND_PROXY_PORT,
        LineKey.OUTBOUND_URI,
        LineKey.PROVIDER,
    }
)


class Converter(StrEnum):
    """Turns a canonical value into the vendor's representation; implemented in render."""

    TEXT = "text"
    URL_WITHOUT_SCHEME = "url-without-scheme"
    URL_SCHEME = "url-scheme"
    MINUTES_TO_SECONDS = "minutes-to-seconds"
    POSIX = "posix"  # POSIX TZ string, e.g. CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00
    UTC_OFFSET_SECONDS = "utc-offset-seconds"  # standard time, east positive: 3600
    UTC_OFFSET_HOURS = "utc-offset-hours"  # +1, +5:30, -3:30
    GMT_OFFSET = "gmt-offset"  # GMT+01:00
    UTC_OFFSET_QUARTER_HOURS = "utc-offset-quarter-hours"  # 4 for UTC+1
    CISCO_DST_RULE = "cisco-dst-rule"  # start=3/-1/7/2:0:0;end=10/-1/7/3:0:0;save=1:0:0
    ZONE_TABLE = "zone-table"  # the profile's time_zones table
    MONTH = "month"
    HOUR = "hour"
    WEEKDAY_SUN0 = "weekday-sun0"  # 0 Sunday .. 6 Saturday
    WEEKDAY_SUN1 = "weekday-sun1"  # 1 Sunday .. 7 Saturday
    WEEKDAY_MON1 = "weekday-mon1"  # 1 Monday .. 7 Sunday
    WEEK_LAST5 = "week-last5"  # 1..4, 5 = last
    WEEK_LAST_MINUS1 = "week-last-minus1"  # 1..4, -1 = last
    DAY_ON_OR_AFTER = "day-on-or-after"  # first day of the week's range: 1, 8, 15, 22; none if last
    LAST_IN_MONTH = "last-in-month"  # "true"/"false", needs a values table
    MONTH_WEEK_WEEKDAY_HOUR = "month-week-weekday-hour"  # 3/5/7/2: week 5 last, Monday 1


CONVERTER_KINDS: dict[Converter, frozenset[ValueKind]] = {
    Converter.TEXT: frozenset(set(ValueKind) - {ValueKind.TRANSITION}),
    Converter.URL_WITHOUT_SCHEME: frozenset({ValueKind.URL}),
    Converter.URL_SCHEME: frozenset({ValueKind.URL}),
    Converter.MINUTES_TO_SECONDS: frozenset({ValueKind.INT}),
    Converter.POSIX: frozenset({ValueKind.ZONE}),
    Converter.UTC_OFFSET_SECONDS: frozenset({ValueKind.ZONE}),
    Converter.UTC_OFFSET_HOURS: frozenset({ValueKind.ZONE}),
    Converter.GMT_OFFSET: frozenset({ValueKind.ZONE}),
    Converter.UTC_OFFSET_QUARTER_HOURS: frozenset({ValueKind.ZONE}),
    Converter.CISCO_DST_RULE: frozenset({ValueKind.ZONE}),
    Converter.ZONE_TABLE: frozenset({ValueKind.ZONE}),
    **dict.fromkeys(
        (
            Converter.MONTH,
            Converter.HOUR,
            Converter.WEEKDAY_SUN0,
            Converter.WEEKDAY_SUN1,
            Converter.WEEKDAY_MON1,
            Converter.WEEK_LAST5,
            Converter.WEEK_LAST_MINUS1,
            Converter.DAY_ON_OR_AFTER,
            Converter.LAST_IN_MONTH,
            Converter.MONTH_WEEK_WEEKDAY_HOUR,
        ),
        frozenset({ValueKind.TRANSITION}),
    ),
}

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"  # an XML name without dots or colons
_DOTTED_NAME = r"[A-Za-z_][A-Za-z0-9._-]*"

# The flat-key grammar of each family: the keys a mapping may name and the keys the sim
# parsers return. Renderers check raw keys against the same patterns.
FAMILY_KEY_PATTERNS: dict[FormatFamily, re.Pattern[str]] = {
    FormatFamily.KEY_VALUE: re.compile(r"^[A-Za-z0-9_.\-]+$"),
    FormatFamily.XML_ATTRIBUTES: re.compile(rf"^{_DOTTED_NAME}$"),
    FormatFamily.XML_ELEMENTS: re.compile(rf"^(?P<name>{_DOTTED_NAME})(?:\[(?P<idx>[0-9]+)\])?$"),
    FormatFamily.P_VALUES: re.compile(r"^P[0-9]+$"),
    FormatFamily.FLAT_PROFILE: re.compile(rf"^{_NAME}$"),
    FormatFamily.GIGASET_PROVISIONING: re.compile(
        r"^(?:firmware@(?:url|version)|[A-Za-z0-9_.\-]+)$"
    ),
    FormatFamily.FANVIL_XML: re.compile(rf"^{_NAME}(?:\[[0-9]+\])?(?:\.{_NAME}(?:\[[0-9]+\])?)*$"),
}

_UNRENDERED_ROLES = {FileRole.UNSERVED, FileRole.UPLOAD}
FAMILY_ROLES: dict[FormatFamily, frozenset[FileRole]] = {
    FormatFamily.KEY_VALUE: frozenset({FileRole.BOOT, FileRole.CONFIG, *_UNRENDERED_ROLES}),
    FormatFamily.XML_ATTRIBUTES: frozenset({FileRole.BOOT, FileRole.CONFIG, *_UNRENDERED_ROLES}),
    FormatFamily.XML_ELEMENTS: frozenset({FileRole.CONFIG, FileRole.FIRMWARE, *_UNRENDERED_ROLES}),
    FormatFamily.P_VALUES: frozenset({FileRole.CONFIG, *_UNRENDERED_ROLES}),
    FormatFamily.FLAT_PROFILE: frozenset({FileRole.CONFIG, *_UNRENDERED_ROLES}),
    FormatFamily.GIGASET_PROVISIONING: frozenset({FileRole.CONFIG, *_UNRENDERED_ROLES}),
    FormatFamily.FANVIL_XML: frozenset({FileRole.CONFIG, *_UNRENDERED_ROLES}),
}

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
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            messages = ["unknown key"]
        else:
            # Cross-field checks report every problem at once, joined by "; ".
            messages = error["msg"].removeprefix("Value error, ").split("; ")
        lines += [f"profile {path.name}: {where + ': ' if where else ''}{m}" for m in messages]
    return "\n".join(lines)
