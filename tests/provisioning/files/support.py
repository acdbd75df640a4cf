"""Shared test data for file provisioning: hostile settings and the device MAC."""

from __future__ import annotations

from typing import Any

from dls.devices.settings import DeviceSettings

# Everything an XML or key=value writer can get wrong, plus non-ASCII letters.
HOSTILE_NAME = "Zoë <Front> & \"Desk\" '#1' ß 東京"
HOSTILE_PASSWORD = "p<&>\"'%NULL%=ü;transport=x"
MAC = "001565f429a4"


def hostile_settings(**overrides: Any) -> DeviceSettings:
    document: dict[str, Any] = {
        "lines": {
            1: {
                "sip_user": "201",
                "display_name": HOSTILE_NAME,
                "label": HOSTILE_NAME,
                "password": HOSTILE_PASSWORD,
                "registrar": "sip.example.net",
                "outbound_proxy": "obp.example.net:5070",
                "transport": "tls",
            },
            2: {
                "sip_user": "202",
                "auth_user": "auth-202",
                "display_name": "Zweite Linie",
                "password": "second-line-secret",
                "registrar": "sip.example.net",
            },
        },
        "time": {
            "ntp_servers": ["ntp.example.net", "ntp2.example.net"],
            "time_zone": "Europe/Berlin",
        },
        "language": "de",
        "admin_password": "admin-<secret>-&",
        "vlan": {"id": 100, "priority": 5},
        "poll_interval_minutes": 1440,
        "firmware": {"version": "2.65.0"},
    }
    document.update(overrides)
    return DeviceSettings.model_validate(document)
