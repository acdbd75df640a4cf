"""The Unify profile: canonical device settings to the WPI items a phone should hold.

``profiles/unify.toml`` is data: which WPI item (and index) each canonical key becomes,
with value tables and a few converters. This module loads and checks it once, and
:func:`desired_items` turns one device's effective :class:`DeviceSettings` into the
tuple of items the WPI engine compares with the phone's inventory. Only the items whose
canonical value is set are produced, so an unset setting leaves the phone's own value.

The canonical key names are the ones the 3rd-party profiles use (``ntp_server_1``,
``registrar_port`` ...), so one vocabulary describes every vendor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
import zoneinfo
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from dls.devices.settings import DeviceSettings, LineSettings
from dls.problems import problems_of
from dls.provisioning.files.vocabulary import GlobalKey, LineKey
from dls.provisioning.wpi.items import SECRET_ITEMS, Item

__all__ = [
    "DEFAULT_PROFILE_PATH",
    "UNIFY_GLOBAL_KEYS",
    "UNIFY_LINE_KEYS",
    "Converter",
    "ProfileError",
    "UnifyProfile",
    "desired_items",
    "load_profile",
    "zone_offsets",
]

DEFAULT_PROFILE_PATH = Path(__file__).resolve().parents[3] / "profiles" / "unify.toml"
VENDOR = "unify"

_ITEM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# Raw keys for this vendor: an item name, optionally with its index, e.g. "function-key-def[3]".
_RAW_KEY = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]{0,63})(?:\[(?P<index>[0-9]{1,4})\])?$")


# The canonical keys Unify phones are given (``_global_values``, ``_line_values``): a
# subset of the vocabulary every vendor's profile uses. The profile may map these and
# no others, so a mapping no value would ever reach is refused when the file is loaded.
UNIFY_GLOBAL_KEYS = frozenset(
    {
        GlobalKey.NTP_SERVER_1,
        GlobalKey.NTP_SERVER_2,
        GlobalKey.TIME_ZONE,  # IANA name; converters derive offsets
        GlobalKey.DST_OBSERVED,
        GlobalKey.DST_SAVE_MINUTES,
        GlobalKey.LANGUAGE,  # tag such as "de" or "en-GB"
        GlobalKey.ADMIN_PASSWORD,
        GlobalKey.VLAN_ENABLED,
        GlobalKey.VLAN_ID,
        GlobalKey.VLAN_PRIORITY,
        GlobalKey.POLL_INTERVAL_MINUTES,
    }
)
UNIFY_LINE_KEYS = frozenset(
    {
        LineKey.ENABLED,
        LineKey.LABEL,
        LineKey.DISPLAY_NAME,
        LineKey.SIP_USER,
        LineKey.AUTH_USER,  # the SIP user when no auth user is set
        LineKey.PASSWORD,
        LineKey.REGISTRAR,
        LineKey.REGISTRAR_PORT,
        LineKey.PROXY,  # the registrar when no proxy is set
        LineKey.TRANSPORT,
        LineKey.OUTBOUND_PROXY,
    }
)

_SECRET_KEYS: frozenset[GlobalKey | LineKey] = frozenset(
    {GlobalKey.ADMIN_PASSWORD, LineKey.PASSWORD}
)


class Converter(StrEnum):
    TEXT = "text"
    UTC_OFFSET_MINUTES = "utc-offset-minutes"  # time_zone: standard offset, east positive
    LANGUAGE = "language"  # "en-GB" -> "en"
    REGION = "region"  # "en-GB" -> "GB"; a tag without region writes nothing


_CONVERTER_KEYS: dict[Converter, frozenset[GlobalKey | LineKey] | None] = {
    Converter.TEXT: None,  # any key
    Converter.UTC_OFFSET_MINUTES: frozenset({GlobalKey.TIME_ZONE}),
    Converter.LANGUAGE: frozenset({GlobalKey.LANGUAGE}),
    Converter.REGION: frozenset({GlobalKey.LANGUAGE}),
}


class ProfileError(ValueError):
    """The Unify profile is malformed; the message names every problem."""


def _as_entries(value: Any) -> Any:
    items = value if isinstance(value, list | tuple) else [value]
    return [{"item": item} if isinstance(item, str) else item for item in items]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemMapping(_Strict):
    item: str = Field(pattern=_ITEM_NAME.pattern)
    index: int | None = Field(default=None, ge=0, le=9999)
    values: dict[str, str] | None = None
    const: str | None = None
    max_length: int | None = Field(default=None, ge=1, le=4096)
    convert: Converter = Converter.TEXT


ItemMappings = Annotated[tuple[ItemMapping, ...], BeforeValidator(_as_entries)]


_Key = TypeVar("_Key", GlobalKey, LineKey)


class _Items(_Strict):
    global_items: dict[GlobalKey, ItemMappings] = Field(default_factory=dict, alias="global")
    line: dict[LineKey, ItemMappings] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("global_items")
    @classmethod
    def _global_keys(cls, value: dict[GlobalKey, ItemMappings]) -> dict[GlobalKey, ItemMappings]:
        return _only(value, UNIFY_GLOBAL_KEYS)

    @field_validator("line")
    @classmethod
    def _line_keys(cls, value: dict[LineKey, ItemMappings]) -> dict[LineKey, ItemMappings]:
        return _only(value, UNIFY_LINE_KEYS)


def _only(mapped: dict[_Key, ItemMappings], given: frozenset[_Key]) -> dict[_Key, ItemMappings]:
    if unused := sorted(set(mapped) - given):
        raise ValueError(
            f"{', '.join(unused)}: Unify phones are given no such value"
            f" (mapped may be: {', '.join(sorted(given))})"
        )
    return mapped


class _Format(_Strict):
    family: Literal["wpi-items"]


class UnifyProfile(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(alias="schema")
    vendor: Literal["unify"]
    display_name: str
    sources: tuple[str, ...] = ()
    lines: int = Field(ge=1, le=16)
    format: _Format
    models: tuple[str, ...] = ()
    items: _Items
    digest: str = ""  # of the file's bytes: part of every device's configuration revision

    def entries(self) -> Iterator[tuple[GlobalKey | LineKey, ItemMapping]]:
        for global_key, global_entries in self.items.global_items.items():
            yield from ((global_key, entry) for entry in global_entries)
        for line_key, line_entries in self.items.line.items():
            yield from ((line_key, entry) for entry in line_entries)


def load_profile(path: Path = DEFAULT_PROFILE_PATH) -> UnifyProfile:
    """Read and check the profile; any problem raises :class:`ProfileError`."""
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"profile {path.name}: {exc}") from None
    data["digest"] = hashlib.sha256(raw).hexdigest()[:12]
    try:
        profile = UnifyProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(
            "\n".join(
                f"profile {path.name}: {problem.where or 'profile'}: {problem.message}"
                for problem in problems_of(exc)
            )
        ) from None
    problems = []
    for key, entry in profile.entries():
        allowed = _CONVERTER_KEYS[entry.convert]
        if allowed is not None and key not in allowed:
            problems.append(f"{key}: converter {entry.convert} does not apply")
        if entry.const is not None and (entry.values is not None or entry.max_length):
            problems.append(f"{key}: const excludes values and max_length")
    if problems:
        raise ProfileError("\n".join(f"profile {path.name}: {p}" for p in problems))
    return profile


# --- canonical values ----------------------------------------------------------------


def zone_offsets(name: str, year: int) -> tuple[int, int]:
    """(standard offset, daylight saving) of an IANA zone in ``year``, in minutes.

    Standard time is the smaller of the year's offsets and the saving the difference, so
    southern-hemisphere zones and tzdata's negative DST (Europe/Dublin) come out as a
    phone's menu shows them. Sampled twice a month: no zone switches more often.
    """
    zone = zoneinfo.ZoneInfo(name)
    offsets = set()
    for month in range(1, 13):
        for day in (1, 16):
            moment = dt.datetime(year, month, day, 12, tzinfo=dt.UTC).astimezone(zone)
            offset = moment.utcoffset()
            assert offset is not None
            offsets.add(int(offset.total_seconds()) // 60)
    standard = min(offsets)
    return standard, max(offsets) - standard


def _global_values(settings: DeviceSettings, year: int) -> dict[GlobalKey, object]:
    values: dict[GlobalKey, object] = {}
    servers = settings.time.ntp_servers
    for key, server in zip((GlobalKey.NTP_SERVER_1, GlobalKey.NTP_SERVER_2), servers, strict=False):
        values[key] = server
    if settings.time.time_zone is not None:
        values[GlobalKey.TIME_ZONE] = settings.time.time_zone
        _, saving = zone_offsets(settings.time.time_zone, year)
        values[GlobalKey.DST_OBSERVED] = saving != 0
        if saving:
            values[GlobalKey.DST_SAVE_MINUTES] = saving
    if settings.language is not None:
        values[GlobalKey.LANGUAGE] = settings.language
    if settings.admin_password is not None:
        values[GlobalKey.ADMIN_PASSWORD] = settings.admin_password.get_secret_value()
    if settings.vlan is not None:
        values[GlobalKey.VLAN_ENABLED] = settings.vlan.enabled
        if settings.vlan.enabled and settings.vlan.id is not None:
            values[GlobalKey.VLAN_ID] = settings.vlan.id
            values[GlobalKey.VLAN_PRIORITY] = settings.vlan.priority
    if settings.poll_interval_minutes is not None:
        values[GlobalKey.POLL_INTERVAL_MINUTES] = settings.poll_interval_minutes
    return values


def _line_values(line: LineSettings) -> dict[LineKey, object]:
    values: dict[LineKey, object] = {
        LineKey.ENABLED: line.enabled,
        LineKey.SIP_USER: line.sip_user,
        LineKey.AUTH_USER: line.auth_user or line.sip_user,
        LineKey.REGISTRAR: line.registrar,
        LineKey.REGISTRAR_PORT: line.port,
        LineKey.PROXY: line.proxy or line.registrar,
        LineKey.TRANSPORT: line.transport.value,
    }
    optional = (
        (LineKey.LABEL, line.label),
        (LineKey.DISPLAY_NAME, line.display_name),
        (LineKey.OUTBOUND_PROXY, line.outbound_proxy),
        (LineKey.PASSWORD, line.password.get_secret_value() if line.password else None),
    )
    values.update({key: value for key, value in optional if value is not None})
    return values


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _convert(entry: ItemMapping, value: object, year: int) -> str | None:
    match entry.convert:
        case Converter.UTC_OFFSET_MINUTES:
            standard, _ = zone_offsets(str(value), year)
            return str(standard)
        case Converter.LANGUAGE:
            return str(value).split("-")[0]
        case Converter.REGION:
            _, _, region = str(value).partition("-")
            return region or None
        case _:
            return _text(value)


def _render(entry: ItemMapping, value: object, year: int) -> Item | None:
    if entry.const is not None:
        return Item(entry.item, entry.const, entry.index)
    text = _convert(entry, value, year)
    if text is None:
        return None
    if entry.values is not None:
        text = entry.values.get(text)
        if text is None:
            return None
    if entry.max_length is not None:
        text = text[: entry.max_length].rstrip()  # a cut must not leave a trailing blank
    return Item(entry.item, text, entry.index)


def desired_items(
    profile: UnifyProfile,
    settings: DeviceSettings,
    *,
    include_secrets: bool = True,
    today: dt.date | None = None,
) -> tuple[Item, ...]:
    """The WPI items ``settings`` ask for, in profile order, then the raw ``unify`` keys.

    With ``include_secrets`` false, passwords are left out (a tenant that requires secure
    mode before secrets go out). A later item with the same name and index wins, so a
    raw key overrides a mapped one, as an admin who writes a raw key expects.
    """
    year = (today or dt.datetime.now(dt.UTC).date()).year
    produced: dict[tuple[str, int | None], Item] = {}

    def add(key: GlobalKey | LineKey, entries: tuple[ItemMapping, ...], value: object) -> None:
        if not include_secrets and key in _SECRET_KEYS:
            return
        for entry in entries:
            item = _render(entry, value, year)
            if item is not None:
                produced[(item.name, item.index)] = item

    global_values = _global_values(settings, year)
    for global_key, global_entries in profile.items.global_items.items():
        if global_key in global_values:
            add(global_key, global_entries, global_values[global_key])
    for index in range(1, profile.lines + 1):
        line = settings.lines.get(index)
        if line is None or not line.enabled:
            continue
        line_values = _line_values(line)
        for line_key, line_entries in profile.items.line.items():
            if line_key in line_values:
                add(line_key, line_entries, line_values[line_key])
    for item in _raw_items(settings.raw.get(VENDOR, {})):
        if include_secrets or item.name not in SECRET_ITEMS:
            produced[(item.name, item.index)] = item
    return tuple(produced.values())


def _raw_items(raw: Mapping[str, str]) -> Iterator[Item]:
    for key, value in raw.items():
        match = _RAW_KEY.match(key)
        if match is None:
            continue  # not a WPI item name; the settings API shows raw keys as stored
        index = match.group("index")
        yield Item(match.group("name"), value, None if index is None else int(index))
