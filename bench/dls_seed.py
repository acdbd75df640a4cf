"""Seed a dls database with a fleet of Yealink phones, fast, the way dls stores them.

``dls init`` (or ``dls db upgrade``) creates the schema first; this module then writes,
with SQLAlchemy Core bulk inserts in batches of BATCH_ROWS, using dls's own models:

- one customer tenant with a tenant-level settings document: registrar (TLS, 5061), time,
  language, admin password, voice VLAN, poll interval and ~20 raw Yealink keys;
- per device one user with a user-level document: line 1 (SIP user, auth user, SIP
  password, display name, label) and four BLF line keys;
- per device a Yealink SIP-T46U assigned to that user, with an HTTP Digest password.

On PostgreSQL the tables are then vacuumed and analysed, as an operator would after a
bulk import, so autovacuum does not run during the measurement.

Secrets go through ``dls.devices.layers.encode_layer`` and ``dls.secretbox.SecretBox``
with the same purposes the admin API uses (``settings:user:<id>``, ``device:<id>:digest``),
so the server decrypts them exactly as it would after an admin created the fleet. The
rendered ``<mac>.cfg`` is about 1.8 KB.

Everything is deterministic for (count, seed): MACs, SIP users and passwords are derived
from them, and the plaintexts the load generator needs are returned (and written by the
caller to ``fleet.tsv``), never read back from the database.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from dls.db.engine import create_engine
from dls.devices.inheritance import SettingsLayer
from dls.devices.layers import encode_layer, purpose
from dls.devices.models import Device, DeviceStatus, Scope, SettingsDocument
from dls.devices.registry import digest_purpose
from dls.secretbox import SecretBox
from dls.tenancy.ids import new_tenant_id
from dls.tenancy.models import Tenant, TenantKind, User

BATCH_ROWS = 5000
VENDOR = "yealink"
MODEL = "T46U"  # the catalogue's name; the User-Agent says SIP-T46U
FIRMWARE = "108.86.0.90"
OUIS = ("805ec0", "805e0c", "249ad8", "001565")
REGISTRAR = "sip.customer-4711.example.net"
FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jan")
LAST_NAMES = ("Meier", "Schmidt", "Keller", "Weber", "Wagner", "Becker", "Hoffmann", "Koch")
BLF_KEYS = 4
_RESET_SEQUENCES = (
    "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    "SELECT setval(pg_get_serial_sequence('devices', 'id'), (SELECT max(id) FROM devices))",
)

TENANT_SETTINGS: dict[str, Any] = {
    "line_defaults": {"registrar": REGISTRAR, "port": 5061, "transport": "tls"},
    "time": {"ntp_servers": ["ntp1.example.net", "ntp2.example.net"], "time_zone": "Europe/Berlin"},
    "language": "de",
    "admin_password": "Adm1n-4711-bench-secret",
    "vlan": {"enabled": True, "id": 20, "priority": 5},
    "poll_interval_minutes": 1440,
    "raw": {
        "yealink": {
            "account.1.codec.pcma.enable": "1",
            "account.1.codec.g722.enable": "1",
            "account.1.codec.opus.enable": "1",
            "account.1.srtp_encryption": "2",
            "account.1.nat.udp_update_enable": "1",
            "features.dnd.enable": "1",
            "features.call_waiting.enable": "1",
            "features.intercom.allow": "1",
            "phone_setting.backlight_time": "60",
            "voice.tone.country": "Germany",
            "static.auto_provision.power_on": "1",
            "static.auto_provision.repeat.enable": "1",
            "static.auto_provision.repeat.minutes": "1440",
            "sip.trust_ctrl": "1",
            "dialplan.area_code.code": "030",
            "static.security.trust_certificates": "1",
            "features.remote_phonebook.enable": "1",
            "remote_phonebook.data.1.url": "https://dls.example.net/phonebook/customer-4711.xml",
            "remote_phonebook.data.1.name": "Company",
        }
    },
}


@dataclass(frozen=True, slots=True)
class Phone:
    """One seeded device and the plaintexts a test client needs."""

    device_id: int
    mac: str
    sip_user: str
    sip_password: str
    display_name: str
    digest_password: str

    @property
    def file_name(self) -> str:
        return f"{self.mac}.cfg"

    @property
    def path(self) -> str:
        return f"/prov/{self.mac}.cfg"

    @property
    def user_agent(self) -> str:
        return f"Yealink SIP-{MODEL} {FIRMWARE} {self.mac}"

    def expected_lines(self) -> list[str]:
        """Lines the rendered file must contain: proof it is this device's, with secrets."""
        return [
            f"account.1.user_name = {self.sip_user}",
            f"account.1.password = {self.sip_password}",
            f"account.1.display_name = {self.display_name}",
            f"account.1.sip_server.1.address = {REGISTRAR}",
        ]


@dataclass(frozen=True, slots=True)
class SeededFleet:
    tenant_id: str
    phones: list[Phone]


def plan_fleet(count: int, seed: int) -> list[tuple[str, str, str, str, str]]:
    """(mac, sip user, SIP password, display name, Digest password) per device."""
    rng = random.Random(seed)
    key = f"dls-bench-{seed}".encode()
    macs: set[str] = set()
    planned: list[tuple[str, str, str, str, str]] = []
    while len(planned) < count:
        mac = rng.choice(OUIS) + f"{rng.getrandbits(24):06x}"
        if mac in macs:
            continue
        macs.add(mac)
        index = len(planned)
        sip_user = f"49301{index:07d}"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        sip_password = _secret(key, "sip", mac)
        digest_password = _secret(key, "digest", mac)
        planned.append((mac, sip_user, sip_password, name, digest_password))
    return planned


def _secret(key: bytes, label: str, mac: str) -> str:
    return hmac.new(key, f"{label}:{mac}".encode(), hashlib.sha256).hexdigest()[:24]


def user_settings(sip_user: str, sip_password: str, name: str) -> dict[str, Any]:
    base = int(sip_user)
    blf = {}
    for key in range(2, 2 + BLF_KEYS):
        blf[f"linekey.{key}.type"] = "16"
        blf[f"linekey.{key}.value"] = str(base + key - 1)
        blf[f"linekey.{key}.label"] = f"Colleague {key - 1}"
    return {
        "lines": {
            "1": {
                "sip_user": sip_user,
                "auth_user": sip_user,
                "password": sip_password,
                "display_name": name,
                "label": sip_user[-4:],
            }
        },
        "raw": {"yealink": blf},
    }


async def seed(database_url: str, box: SecretBox, count: int, seed_value: int = 1) -> SeededFleet:
    """Insert the tenant, ``count`` users, their documents and devices; returns the fleet."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            tenant_id = new_tenant_id()
            await connection.execute(
                insert(Tenant).values(
                    tenant_id=tenant_id,
                    kind=TenantKind.CUSTOMER,
                    name=f"Bench customer {tenant_id}",
                    country="DE",
                    eu=True,
                )
            )
            tenant_layer = SettingsLayer.model_validate(TENANT_SETTINGS)
            await connection.execute(
                insert(SettingsDocument).values(
                    scope=Scope.TENANT,
                    scope_key=tenant_id,
                    data=encode_layer(tenant_layer, box, purpose("tenant", tenant_id)),
                    revision=1,
                )
            )
            first_user = (await connection.scalar(select(func.max(User.id)))) or 0
            first_device = (await connection.scalar(select(func.max(Device.id)))) or 0
            phones: list[Phone] = []
            planned = plan_fleet(count, seed_value)
            for start in range(0, count, BATCH_ROWS):
                users, documents, devices = [], [], []
                for index, (mac, sip_user, sip_pw, name, digest_pw) in enumerate(
                    planned[start : start + BATCH_ROWS], start=start
                ):
                    user_id, device_id = first_user + index + 1, first_device + index + 1
                    users.append(
                        {
                            "id": user_id,
                            "tenant_id": tenant_id,
                            "username": f"{sip_user}-{mac}@bench.example.net",
                            "display_name": name,
                        }
                    )
                    layer = SettingsLayer.model_validate(user_settings(sip_user, sip_pw, name))
                    documents.append(
                        {
                            "scope": Scope.USER,
                            "scope_key": str(user_id),
                            "data": encode_layer(layer, box, purpose("user", str(user_id))),
                            "revision": 1,
                        }
                    )
                    devices.append(
                        {
                            "id": device_id,
                            "mac": mac,
                            "vendor": VENDOR,
                            "model": MODEL,
                            "tenant_id": tenant_id,
                            "user_id": user_id,
                            "user_line": 1,
                            "status": DeviceStatus.ASSIGNED,
                            "revision": 1,
                            "digest_password": box.encrypt(digest_pw, digest_purpose(device_id)),
                        }
                    )
                    phones.append(Phone(device_id, mac, sip_user, sip_pw, name, digest_pw))
                await connection.execute(insert(User), users)
                await connection.execute(insert(SettingsDocument), documents)
                await connection.execute(insert(Device), devices)
            if connection.dialect.name == "postgresql":
                # Explicit ids leave the sequences behind; the admin API would collide.
                for statement in _RESET_SEQUENCES:
                    await connection.exec_driver_sql(statement)
        if engine.dialect.name == "postgresql":
            # As after any bulk import: otherwise autovacuum and autoanalyze of the fresh
            # tables run during the measurement (0.7 of a core at 100,000 phones).
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("VACUUM (ANALYZE)")
        return SeededFleet(tenant_id, phones)
    finally:
        await engine.dispose()


async def set_legacy_mac_only(database_url: str, tenant_id: str, enabled: bool) -> None:
    """The tenant's legacy MAC-only trust; the device path reads it on every request."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Tenant).where(Tenant.tenant_id == tenant_id).values(legacy_mac_only=enabled)
            )
    finally:
        await engine.dispose()
