"""Canonical values: ``DeviceSettings`` flattened into the keys profiles map from.

Each ``GlobalKey`` and ``LineKey`` gets its value here, once, vendor-neutral; the mapping
engine then only converts and renames. A key whose setting is unset is absent, so the
vendor file leaves the device's own value alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from dls.devices.settings import DeviceSettings, LineSettings
from dls.provisioning.files.render.timezones import ZoneRuleError, zone_rule
from dls.provisioning.files.vocabulary import GlobalKey, LineKey

__all__ = ["CanonicalValues", "canonical_values", "host_port"]


@dataclass(frozen=True, slots=True)
class CanonicalValues:
    global_values: dict[GlobalKey, object]
    lines: dict[int, dict[LineKey, object]]
    problems: tuple[str, ...]  # canonical values that could not be derived, with why


def canonical_values(
    settings: DeviceSettings,
    *,
    firmware_url: str | None = None,
    firmware_descriptor_url: str | None = None,
    base_url: str | None = None,
) -> CanonicalValues:
    """All canonical values of ``settings``; the URLs come from the render request."""
    values: dict[GlobalKey, object] = {}
    problems: list[str] = []
    for key, server in zip(
        (GlobalKey.NTP_SERVER_1, GlobalKey.NTP_SERVER_2), settings.time.ntp_servers, strict=False
    ):
        values[key] = server
    if settings.time.time_zone is not None:
        try:
            rule = zone_rule(settings.time.time_zone)
        except ZoneRuleError as exc:
            problems.append(f"time_zone: {exc}")
        else:
            values[GlobalKey.TIME_ZONE] = rule
            values[GlobalKey.DST_OBSERVED] = rule.observes_dst
            if rule.dst_save is not None:
                values[GlobalKey.DST_SAVE_MINUTES] = rule.dst_save // 60
            if rule.start is not None and rule.end is not None:
                values[GlobalKey.DST_START] = rule.start
                values[GlobalKey.DST_END] = rule.end
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
        values[GlobalKey.POLL_ENABLED] = True
        values[GlobalKey.POLL_INTERVAL_MINUTES] = settings.poll_interval_minutes
    if settings.firmware is not None:
        values[GlobalKey.FIRMWARE_VERSION] = settings.firmware.version
    optional_urls = (
        (GlobalKey.FIRMWARE_URL, firmware_url),
        (GlobalKey.FIRMWARE_DESCRIPTOR_URL, firmware_descriptor_url),
        (GlobalKey.PROVISIONING_BASE_URL, base_url),
    )
    values.update({key: url for key, url in optional_urls if url})
    return CanonicalValues(values, _lines(settings), tuple(problems))


def _lines(settings: DeviceSettings) -> dict[int, dict[LineKey, object]]:
    providers: dict[tuple[object, ...], int] = {}
    lines = {}
    for index in sorted(settings.lines):
        line = settings.lines[index]
        server = (line.registrar, line.proxy, line.port, line.transport, line.outbound_proxy)
        provider = providers.setdefault(server, len(providers) + 1)
        lines[index] = _line(line, provider)
    return lines


def _line(line: LineSettings, provider: int) -> dict[LineKey, object]:
    proxy = line.proxy or line.registrar
    values: dict[LineKey, object] = {
        LineKey.ENABLED: line.enabled,
        LineKey.SIP_USER: line.sip_user,
        LineKey.AUTH_USER: line.auth_user or line.sip_user,
        LineKey.AUTH_USER_SET: line.auth_user is not None,
        LineKey.REGISTRAR: line.registrar,
        LineKey.REGISTRAR_PORT: line.port,
        LineKey.REGISTRAR_HOST_PORT: host_port(line.registrar, line.port),
        LineKey.PROXY: proxy,
        LineKey.PROXY_HOST_PORT: host_port(proxy, line.port),
        LineKey.TRANSPORT: line.transport.value,
        LineKey.OUTBOUND_PROXY_SET: line.outbound_proxy is not None,
        LineKey.PROVIDER: provider,
    }
    if line.label is not None:
        values[LineKey.LABEL] = line.label
    if line.display_name is not None:
        values[LineKey.DISPLAY_NAME] = line.display_name
    if line.password is not None:
        values[LineKey.PASSWORD] = line.password.get_secret_value()
    if line.outbound_proxy is not None:
        host, port = _split_host_port(line.outbound_proxy)
        values[LineKey.OUTBOUND_PROXY] = line.outbound_proxy
        values[LineKey.OUTBOUND_PROXY_HOST] = host
        values[LineKey.OUTBOUND_PROXY_PORT] = port or line.port
    target = line.outbound_proxy or host_port(proxy, line.port)
    values[LineKey.OUTBOUND_URI] = f"{target};transport={line.transport.value}"
    return values


def host_port(host: str, port: int) -> str:
    """``host:port``, bracketing an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_host_port(value: str) -> tuple[str, int | None]:
    """Inverse of ``host_port`` for an already validated ``HostPort``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, None
