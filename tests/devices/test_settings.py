"""The canonical settings model: what it accepts, and what no vendor format could carry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dls.devices.settings import DeviceSettings, LineSettings, Transport, VlanSettings

HOSTILE = "Zoë <&> \"Front\" 'Desk' ß 東京"


def line(**overrides: object) -> dict[str, object]:
    return {"sip_user": "201", "registrar": "sip.example.net", **overrides}


def test_minimal_line_gets_defaults() -> None:
    settings = DeviceSettings.model_validate({"lines": {1: line()}})
    only = settings.lines[1]
    assert (only.port, only.transport, only.enabled) == (5060, Transport.UDP, True)


def test_hostile_text_is_accepted_and_secrets_stay_out_of_repr() -> None:
    settings = DeviceSettings.model_validate(
        {"lines": {1: line(display_name=HOSTILE, password=HOSTILE)}, "admin_password": HOSTILE}
    )
    assert settings.lines[1].display_name == HOSTILE
    assert settings.lines[1].password is not None
    assert settings.lines[1].password.get_secret_value() == HOSTILE
    assert HOSTILE not in repr(settings)


@pytest.mark.parametrize(
    "display_name",
    [
        "line\nbreak",
        "tab\there",
        "nul\x00",
        "c1\x85",
        "ls\u2028",
        " leading",
        "trailing ",
        "\ufffe",
        "",
    ],
)
def test_text_no_format_can_carry_is_rejected(display_name: str) -> None:
    with pytest.raises(ValidationError):
        LineSettings.model_validate(line(display_name=display_name))


def test_rejection_message_never_echoes_a_password() -> None:
    with pytest.raises(ValidationError) as caught:
        LineSettings.model_validate(line(password="s3cret\nx"))
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert DeviceSettings.model_validate({"time": {"time_zone": zone}}).time.time_zone == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "CET-1CEST", ""])
def test_unknown_time_zones_are_rejected(zone: str) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        DeviceSettings.model_validate({"time": {"time_zone": zone}})


@pytest.mark.parametrize("host", ["sip.example.net", "10.0.0.1", "2001:db8::1", "sip-1.example"])
def test_hosts(host: str) -> None:
    assert LineSettings.model_validate(line(registrar=host)).registrar == host


@pytest.mark.parametrize("host", ["sip example", "-bad.example", "a" * 64 + ".example", "x/y"])
def test_bad_hosts(host: str) -> None:
    with pytest.raises(ValidationError):
        LineSettings.model_validate(line(registrar=host))


@pytest.mark.parametrize("proxy", ["obp.example.net", "obp.example.net:5070", "[2001:db8::1]:5061"])
def test_outbound_proxy_host_port(proxy: str) -> None:
    assert LineSettings.model_validate(line(outbound_proxy=proxy)).outbound_proxy == proxy


@pytest.mark.parametrize("proxy", ["obp:0", "obp:99999", "[2001:db8::1", "[::1]x"])
def test_bad_outbound_proxy(proxy: str) -> None:
    with pytest.raises(ValidationError):
        LineSettings.model_validate(line(outbound_proxy=proxy))


def test_vlan_bounds_and_enabled_needs_id() -> None:
    assert VlanSettings(id=4094, priority=7).id == 4094
    assert VlanSettings(enabled=False).id is None
    for bad in ({"id": 0}, {"id": 4095}, {"id": 10, "priority": 8}, {}):
        with pytest.raises(ValidationError):
            VlanSettings.model_validate(bad)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        DeviceSettings.model_validate({"ntp": "x"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        LineSettings.model_validate(line(sip_password="x"))


def test_raw_keys_are_per_vendor() -> None:
    settings = DeviceSettings.model_validate({"raw": {"yealink": {"features.dnd.enable": "1"}}})
    assert settings.raw == {"yealink": {"features.dnd.enable": "1"}}
    with pytest.raises(ValidationError):
        DeviceSettings.model_validate({"raw": {"Yealink!": {"a": "b"}}})
    with pytest.raises(ValidationError):
        DeviceSettings.model_validate({"raw": {"yealink": {"a": "line\nbreak"}}})


def test_line_indices_are_one_based() -> None:
    with pytest.raises(ValidationError):
        DeviceSettings.model_validate({"lines": {0: line()}})
