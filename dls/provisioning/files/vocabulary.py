"""The words vendor profiles are written in: format families, file roles and scopes, the
canonical keys a mapping may name with the kind of value each holds, and the converters.

``profiles`` checks a profile against these; the renderers and the simulated phones
speak them. They change when dls learns something new (a format family, a canonical
setting, a converter), not when a vendor or a model is added.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "CONVERTER_KINDS",
    "FAMILY_KEY_PATTERNS",
    "FAMILY_ROLES",
    "GLOBAL_KEY_KINDS",
    "LINE_KEY_KINDS",
    "PROVIDER_SCOPED_KEYS",
    "SECRET_KEYS",
    "Converter",
    "FileRole",
    "FileScope",
    "FirmwareLocation",
    "FormatFamily",
    "GlobalKey",
    "LineKey",
    "MacCase",
    "ValueKind",
    "VersionKind",
]


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
