"""The canonical settings model: what a phone or ATA should end up configured with.

One vendor-neutral document per device. Vendor profiles map its fields to vendor keys; what
the model lacks goes into ``raw``, per vendor, verbatim. Every text value is checked here,
once, against what *all* our formats can carry: no control characters (XML 1.0 cannot hold
most of them, and a newline would split a ``key = value`` line into two settings), no
leading or trailing blanks (key=value parsers trim them, so they would not survive a round
trip), and nothing outside the XML character range.

Secrets (SIP passwords, the phone admin password) are ``SecretStr`` so that ``repr`` and
logs never show them; only a renderer for an authenticated device unwraps them.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

__all__ = [
    "MAX_LINE_INDEX",
    "DeviceSettings",
    "FirmwareTarget",
    "Host",
    "HostPort",
    "LanguageTag",
    "LineIndex",
    "LineSettings",
    "RawKey",
    "RawValue",
    "SafeText",
    "Secret",
    "TimeSettings",
    "TimeZoneName",
    "Transport",
    "VendorName",
    "VersionString",
    "VlanSettings",
    "check_text",
]

MAX_LINE_INDEX = 999  # Gigaset N870 multicell systems carry hundreds of handset accounts
MAX_TEXT_LENGTH = 255  # longer than any display name or password field we know of
MAX_NTP_SERVERS = 4  # no profile maps more than two; four leaves room
MAX_POLL_INTERVAL_MINUTES = 43_200  # 30 days; Grandstream P193 caps near 10 years, Poly far less


def check_text(value: str) -> str:
    """Reject what one of our vendor formats could not carry back unchanged.

    Why each rule exists is in the module docstring. Raises ``ValueError`` naming the
    offending character's code point, never the value (it may be a password).
    """
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    for char in value:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0:
            raise ValueError(f"control character U+{code:04X} is not allowed")
        if 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            raise ValueError(f"U+{code:04X} cannot be stored in XML")
        if code in (0x2028, 0x2029):  # line/paragraph separator: some readers split lines on them
            raise ValueError(f"line separator U+{code:04X} is not allowed")
    return value


def _check_secret(value: SecretStr) -> SecretStr:
    check_text(value.get_secret_value())
    return value


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _check_host(value: str) -> str:
    """A DNS name or an IP address literal (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValueError("not a host name or IP address")
    return value


def _check_host_port(value: str) -> str:
    """``host`` or ``host:port``; IPv6 literals need brackets when a port follows."""
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError("unclosed '[' in IPv6 literal")
        ipaddress.IPv6Address(host)
        port = rest.removeprefix(":") if rest else ""
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':port' after ']'")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
        _check_host(host)
    else:
        _check_host(value)
        port = ""
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("port must be 1-65535")
    return value


def _check_time_zone(value: str) -> str:
    # zoneinfo also rejects path tricks such as "../etc/passwd".
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


SafeText = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT_LENGTH), AfterValidator(check_text)
]
Secret = Annotated[
    SecretStr, Field(min_length=1, max_length=MAX_TEXT_LENGTH), AfterValidator(_check_secret)
]
Host = Annotated[str, AfterValidator(_check_host)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
TimeZoneName = Annotated[str, AfterValidator(_check_time_zone)]
# ISO 639 language, optionally with an ISO 3166 region: "de", "en-GB". Profiles map these to
# vendor language names; an unmapped tag is left out of the rendered file.
LanguageTag = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")]
VersionString = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._()+-]{0,63}$")]
LineIndex = Annotated[int, Field(ge=1, le=MAX_LINE_INDEX)]
VendorName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# Raw keys are checked again by the renderer of the vendor's format family, which knows its
# own key grammar; here only what no format can carry is refused.
RawKey = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH), AfterValidator(check_text)]
RawValue = Annotated[str, Field(max_length=4096), AfterValidator(check_text)]


class Transport(StrEnum):
    """SIP transport of a line."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class _Strict(BaseModel):
    # hide_input_in_errors: a rejected password must not reach logs through the error text.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class LineSettings(_Strict):
    """One SIP account: a phone line, or the account behind one FXS port of an ATA."""

    enabled: bool = True
    label: SafeText | None = Field(default=None, description="Short text on the line key.")
    display_name: SafeText | None = Field(default=None, description="Caller name sent out.")
    sip_user: SafeText = Field(description="User part of the address of record.")
    auth_user: SafeText | None = Field(
        default=None, description="Digest user name; the SIP user when unset."
    )
    password: Secret | None = Field(default=None, description="Digest password.")
    registrar: Host = Field(description="Registrar host.")
    proxy: Host | None = Field(
        default=None, description="SIP proxy host; the registrar when unset."
    )
    port: int = Field(default=5060, ge=1, le=65535, description="Registrar and proxy port.")
    transport: Transport = Transport.UDP
    outbound_proxy: HostPort | None = Field(default=None, description="host or host:port.")


class TimeSettings(_Strict):
    ntp_servers: tuple[Host, ...] = Field(default=(), max_length=MAX_NTP_SERVERS)
    time_zone: TimeZoneName | None = Field(
        default=None, description="IANA name, e.g. Europe/Berlin."
    )


class VlanSettings(_Strict):
    """Voice VLAN. ``enabled=False`` turns tagging off on the device explicitly."""

    enabled: bool = True
    id: int | None = Field(default=None, ge=1, le=4094)
    priority: int = Field(default=0, ge=0, le=7, description="802.1p priority.")

    @model_validator(mode="after")
    def _id_when_enabled(self) -> VlanSettings:
        if self.enabled and self.id is None:
            raise ValueError("an enabled VLAN needs an id")
        return self


class FirmwareTarget(_Strict):
    """The firmware version the device should run; delivery resolves it to an image."""

    version: VersionString


class DeviceSettings(_Strict):
    """Everything dls configures on one device, vendor-neutral.

    ``raw`` holds vendor keys the model lacks, ``{vendor: {key: value}}``. They go into
    per-device files only, after (and so over) the mapped keys: the admin who writes a raw
    key asked for exactly that value.
    """

    lines: dict[LineIndex, LineSettings] = Field(default_factory=dict)
    time: TimeSettings = Field(default_factory=TimeSettings)
    language: LanguageTag | None = None
    admin_password: Secret | None = Field(default=None, description="Phone web/menu admin.")
    vlan: VlanSettings | None = Field(default=None, description="None: leave the device's own.")
    poll_interval_minutes: int | None = Field(
        default=None, ge=1, le=MAX_POLL_INTERVAL_MINUTES, description="Re-provisioning period."
    )
    firmware: FirmwareTarget | None = None
    raw: dict[VendorName, dict[RawKey, RawValue]] = Field(default_factory=dict)
