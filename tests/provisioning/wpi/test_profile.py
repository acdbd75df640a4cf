"""The Unify profile: canonical settings to WPI items, as profiles/unify.toml says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dls.devices.settings import DeviceSettings
from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.profile import ProfileError, desired_items, load_profile, zone_offsets

SUMMER = dt.date(2026, 7, 1)


def _settings(**values: object) -> DeviceSettings:
    return DeviceSettings.model_validate(values)


def _items(settings: DeviceSettings, **options: object) -> dict[tuple[str, int | None], str]:
    found = desired_items(load_profile(), settings, today=SUMMER, **options)  # type: ignore[arg-type]
    return {(item.name, item.index): item.value for item in found}


def test_a_line_and_the_time_become_the_documented_items() -> None:
    items = _items(
        _settings(
            lines={
                1: {
                    "sip_user": "201",
                    "auth_user": "auth201",
                    "password": "s3cret",
                    "registrar": "registrar.example.net",
                    "proxy": "proxy.example.net",
                    "port": 5070,
                    "transport": "tls",
                    "display_name": "Front Desk",
                }
            },
            time={
                "ntp_servers": ["ntp1.example.net", "ntp2.example.net"],
                "time_zone": "Europe/Berlin",
            },
        )
    )
    assert items == {
        ("e164", None): "201",
        ("sip-user-id", None): "auth201",
        ("sip-pwd", None): "s3cret",
        ("reg-addr", None): "proxy.example.net",
        ("registrar-addr", None): "registrar.example.net",
        ("reg-port", None): "5070",
        ("registrar-port", None): "5070",
        ("sip-transport-user", None): "2",
        ("display-id", None): "Front Desk",
        ("display-id-unicode", None): "Front Desk",
        ("use-display-id", None): "true",
        ("sntp-addr", None): "ntp1.example.net",
        ("sntp-addr-backup", None): "ntp2.example.net",
        ("sntp-tz-offset", None): "60",  # standard time, also in summer
        ("auto-daylight-save", None): "true",
        ("daylight-save-minutes", None): "60",
    }


def test_unset_settings_write_nothing_and_defaults_fill_in() -> None:
    assert _items(_settings()) == {}
    line = _items(_settings(lines={1: {"sip_user": "7", "registrar": "pbx.example.net"}}))
    assert line[("sip-user-id", None)] == "7"  # the SIP user when no auth user is set
    assert line[("reg-addr", None)] == "pbx.example.net"  # the registrar when no proxy
    assert ("sip-pwd", None) not in line


def test_secrets_can_be_withheld() -> None:
    settings = _settings(
        admin_password="admin-secret",
        lines={1: {"sip_user": "7", "registrar": "pbx.example.net", "password": "pw"}},
        raw={"unify": {"ssh-password": "raw-secret", "ssh-enable": "true"}},
    )
    withheld = _items(settings, include_secrets=False)
    assert ("sip-pwd", None) not in withheld and ("admin-pwd", None) not in withheld
    assert ("ssh-password", None) not in withheld and withheld[("ssh-enable", None)] == "true"
    assert _items(settings)[("admin-pwd", None)] == "admin-secret"


def test_language_vlan_and_raw_items() -> None:
    items = _items(
        _settings(
            language="en-GB",
            vlan={"id": 20},
            raw={"unify": {"function-key-def[3]": "1", "reg-port": "5090", "bad key": "x"}},
            lines={1: {"sip_user": "7", "registrar": "pbx.example.net"}},
        )
    )
    assert items[("language-iso", None)] == "en" and items[("country-iso", None)] == "GB"
    assert items[("vlan-method", None)] == "0" and items[("vlan-id", None)] == "20"
    assert items[("function-key-def", 3)] == "1"
    assert items[("reg-port", None)] == "5090"  # a raw key overrides the mapped one
    assert not any(name == "bad key" for name, _ in items)
    off = _items(_settings(vlan={"enabled": False}, language="de"))
    assert ("vlan-method", None) not in off and ("country-iso", None) not in off


def test_only_line_one_is_written_and_long_names_are_cut() -> None:
    items = desired_items(
        load_profile(),
        _settings(
            lines={
                1: {"sip_user": "1", "registrar": "a.example", "display_name": "x" * 23 + " yz"},
                2: {"sip_user": "2", "registrar": "b.example"},
            }
        ),
    )
    assert Item("e164", "1") in items and Item("e164", "2") not in items
    assert Item("display-id", "x" * 23) in items  # cut to 24, trailing blank dropped


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Berlin", (60, 60)),
        ("America/New_York", (-300, 60)),
        ("Australia/Sydney", (600, 60)),  # DST in the southern summer
        ("Europe/Dublin", (0, 60)),  # tzdata's negative DST comes out as a phone shows it
        ("Asia/Kolkata", (330, 0)),
        ("America/St_Johns", (-210, 60)),
        ("UTC", (0, 0)),
    ],
)
def test_zone_offsets(zone: str, expected: tuple[int, int]) -> None:
    assert zone_offsets(zone, 2026) == expected


def test_a_zone_without_dst_turns_automatic_dst_off() -> None:
    items = _items(_settings(time={"time_zone": "Asia/Kolkata"}))
    assert items[("sntp-tz-offset", None)] == "330"
    assert items[("auto-daylight-save", None)] == "false"
    assert ("daylight-save-minutes", None) not in items


def test_malformed_profiles_are_refused_with_the_problem(tmp_path: Path) -> None:
    good = load_profile().model_dump(by_alias=True)
    assert good["vendor"] == "unify" and good["digest"]
    path = tmp_path / "unify.toml"
    path.write_text(
        'schema = 1\nvendor = "unify"\ndisplay_name = "x"\nlines = 1\n'
        '[format]\nfamily = "wpi-items"\n[items.global]\nntp_server_9 = "sntp-addr"\n'
    )
    with pytest.raises(ProfileError, match="ntp_server_9"):
        load_profile(path)
    # A key of the shared vocabulary that no Unify value reaches: a mapping left unused.
    path.write_text(
        'schema = 1\nvendor = "unify"\ndisplay_name = "x"\nlines = 1\n'
        '[format]\nfamily = "wpi-items"\n[items.global]\ndst_start = "dst-start"\n'
    )
    with pytest.raises(ProfileError) as refused:
        load_profile(path)
    assert str(refused.value).startswith(
        "profile unify.toml: items.global: dst_start: Unify phones are given no such value"
        " (mapped may be: admin_password, dst_observed,"
    )
    path.write_text(
        'schema = 1\nvendor = "unify"\ndisplay_name = "x"\nlines = 1\n'
        '[format]\nfamily = "wpi-items"\n[items.line]\n'
        'sip_user = { item = "e164", convert = "utc-offset-minutes" }\n'
    )
    with pytest.raises(ProfileError, match="does not apply"):
        load_profile(path)
