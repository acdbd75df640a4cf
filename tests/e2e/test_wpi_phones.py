"""Unify phones against the real server over TLS: simulated handsets from dls.sim.unify.

Everything an admin does goes through the admin API (tenants, users, devices, settings,
jobs, PINs), so these tests also show the intended sequence of calls. The phone verifies
the server against the generated CA, which real phones in default mode do not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dls.config import load_settings
from dls.pki import ensure_pki, issue_device_certificate
from dls.sim.unify import UnifyPhone
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]

MAC = "001ae8123456"
PASSWORD = "correct horse battery staple"
LINE = {"sip_user": "201", "password": "line-secret-1", "registrar": "sip.example.net"}
CONTACT_WAIT = 30.0  # seconds: the dispatcher looks every 1 s, for new assignments every 5 s


class Admin:
    """The admin API as the tests use it."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.context = server.ssl_context()
        self.token = ""

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, expect: int
    ) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.request(
            method,
            self.server.url("admin", "/api/v1" + path),
            json=body,
            headers=headers,
            ssl=self.context,
        ) as response:
            payload = await response.json() if response.status != 204 else None
            assert response.status == expect, payload
            return payload

    async def login(self, username: str, password: str) -> str:
        async with self.session.post(
            self.server.url("admin", "/api/v1/auth/login"),
            json={"username": username, "password": password},
            ssl=self.context,
        ) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["token"])

    async def customer(self, name: str, secure_mode: str = "off") -> str:
        tenant = await self.call(
            "POST", "/tenants", {"kind": "customer", "name": name, "country": "DE"}, expect=201
        )
        tenant_id = str(tenant["tenant_id"])
        await self.call(
            "PUT", f"/tenants/{tenant_id}/wpi-secure-mode", {"mode": secure_mode}, expect=200
        )
        return tenant_id

    async def user(self, tenant_id: str, username: str, line: dict[str, Any]) -> int:
        user = await self.call(
            "POST",
            f"/tenants/{tenant_id}/users",
            {"username": username, "password": PASSWORD},
            expect=201,
        )
        await self.call(
            "PUT",
            f"/tenants/{tenant_id}/users/{user['id']}/settings",
            {"settings": {"lines": {"1": line}}},
            expect=200,
        )
        return int(user["id"])

    async def device(self, tenant_id: str, mac: str, user_id: int | None) -> int:
        device = await self.call(
            "POST",
            f"/tenants/{tenant_id}/devices",
            {"mac": mac, "vendor": "unify", "model": "OpenStage 40", "user_id": user_id},
            expect=201,
        )
        return int(device["id"])

    async def job(self, tenant_id: str, device_id: int, kind: str) -> int:
        job = await self.call(
            "POST", f"/tenants/{tenant_id}/devices/{device_id}/jobs", {"kind": kind}, expect=201
        )
        return int(job["id"])

    async def job_state(self, tenant_id: str, device_id: int, job_id: int) -> str:
        page = await self.call("GET", f"/tenants/{tenant_id}/devices/{device_id}/jobs", expect=200)
        (job,) = [job for job in page["items"] if job["id"] == job_id]
        return str(job["state"])


@pytest.fixture
async def admin(server: ServerProcess) -> AsyncIterator[Admin]:
    banner = re.search(r"user (\S+)  password (\S+)", server.output())
    assert banner is not None, server.output()
    async with aiohttp.ClientSession() as session:
        api = Admin(server, session)
        api.token = await api.login(banner[1], banner[2])
        yield api


@pytest.fixture
async def make_phone(server: ServerProcess) -> AsyncIterator[Callable[..., UnifyPhone]]:
    phones: list[UnifyPhone] = []

    def build(mac: str = MAC, **values: Any) -> UnifyPhone:
        phone = UnifyPhone(
            mac,
            device_url=server.url("device", ""),
            secure_url=server.url("secure", ""),
            ca_file=server.ca_file,
            **values,
        )
        phones.append(phone)
        return phone

    yield build
    for phone in phones:
        await phone.close()


async def _until(phone: UnifyPhone, predicate: Callable[[UnifyPhone], bool]) -> None:
    async with asyncio.timeout(CONTACT_WAIT):
        await phone.wait_for(predicate)


async def test_first_boot_of_an_unknown_phone(
    admin: Admin, make_phone: Callable[..., UnifyPhone]
) -> None:
    phone = make_phone(e164="4930123456")
    await phone.listen()
    (boot,) = await phone.start_up()
    assert boot.actions == ["CleanUp"] and boot.written == {}
    assert phone.value("sip-pwd") is None
    unclaimed = await admin.call("GET", "/unclaimed-devices", expect=200)
    (found,) = [d for d in unclaimed["items"] if d["mac"] == MAC]
    assert (found["vendor"], found["model"], found["firmware_version"]) == (
        "unify",
        "OpenStage 40",
        "V3 R5.12.0",
    )


async def test_assignment_by_mac_is_followed_by_contact_me_and_configuration(
    server: ServerProcess, admin: Admin, make_phone: Callable[..., UnifyPhone]
) -> None:
    phone = make_phone()
    await phone.listen()
    await phone.start_up()  # unknown: recorded, CleanUp
    tenant = await admin.customer("Assigned GmbH")
    user = await admin.user(tenant, "front-desk", LINE)
    await admin.call(
        "POST", f"/tenants/{tenant}/devices/claim", {"mac": MAC, "user_id": user}, expect=201
    )
    await _until(phone, lambda p: any(i.configured for i in p.interactions))
    (contact,) = phone.contacts
    assert contact["ContactMe"] == "true" and contact["dls_ip_addr"] == "127.0.0.1"
    assert contact["dls_ip_port"] == str(server.device_port)
    configured = phone.interactions[-1]
    assert configured.reason == "solicited"
    assert configured.actions == ["ReadAllItems", "WriteItems", "CleanUp"]
    assert phone.value("sip-pwd") == "line-secret-1" and phone.value("e164") == "201"


async def test_self_setup_with_a_pin_when_allowed_and_when_forbidden(
    admin: Admin, make_phone: Callable[..., UnifyPhone]
) -> None:
    allowed = await admin.customer("Self Setup AG")
    user = await admin.user(allowed, "self-setter", LINE)
    await admin.call("POST", f"/tenants/{allowed}/users/{user}/deployment-pin", {}, expect=201)
    token = await admin.login("self-setter", PASSWORD)
    own = await admin.call(
        "GET", f"/tenants/{allowed}/users/{user}/deployment-pin", token=token, expect=200
    )
    phone = make_phone(pin=own["pin"])
    (boot,) = await phone.start_up()
    assert boot.actions == ["ReadAllItems", "WriteItems", "CleanUp"]
    assert phone.value("sip-pwd") == "line-secret-1"
    devices = await admin.call("GET", f"/tenants/{allowed}/devices", expect=200)
    (device,) = devices["items"]
    assert (device["mac"], device["user_id"], device["status"]) == (MAC, user, "assigned")

    forbidden = await admin.customer("No Self Setup AG")
    await admin.call("PATCH", f"/tenants/{forbidden}", {"self_setup_allowed": False}, expect=200)
    other = await admin.user(forbidden, "not-allowed", LINE)
    pin = await admin.call(
        "POST", f"/tenants/{forbidden}/users/{other}/deployment-pin", {}, expect=201
    )
    refused = make_phone("001ae8654321", pin=pin["pin"])
    (boot,) = await refused.start_up()
    assert boot.actions == ["CleanUp"] and refused.value("sip-pwd") is None
    entries = await admin.call("GET", f"/tenants/{forbidden}/audit", expect=200)
    assert "device.self_setup_refused" in [entry["action"] for entry in entries["items"]]


async def test_busy_phone_is_solicited_again_when_idle(
    admin: Admin, make_phone: Callable[..., UnifyPhone]
) -> None:
    tenant = await admin.customer("Busy KG")
    user = await admin.user(tenant, "on-the-phone", LINE)
    device = await admin.device(tenant, MAC, user)
    phone = make_phone()
    await phone.listen()
    await phone.start_up()
    await admin.call(
        "PUT",
        f"/tenants/{tenant}/settings",
        {"settings": {"time": {"ntp_servers": ["ntp.example.net"]}}},
        expect=200,
    )
    phone.in_call = True
    job = await admin.job(tenant, device, "push-config")
    await _until(phone, lambda p: len(p.interactions) == 2)
    busy = phone.interactions[-1]
    assert (busy.reason, busy.replies, busy.send_solicited) == ("solicited", ["busy"], True)
    assert await admin.job_state(tenant, device, job) == "busy-retry"
    (callback,) = await phone.hang_up()
    assert callback.reason == "solicited" and callback.replies == ["accepted"]
    assert phone.value("sntp-addr") == "ntp.example.net"
    assert await admin.job_state(tenant, device, job) == "accepted"


async def test_secure_mode_switch_then_the_default_port_is_refused(
    server: ServerProcess, admin: Admin, make_phone: Callable[..., UnifyPhone], tmp_path: Path
) -> None:
    tenant = await admin.customer("Secure SE", secure_mode="required")
    user = await admin.user(tenant, "secure-user", LINE)
    device = await admin.device(tenant, MAC, user)
    phone = make_phone()
    bootstrap, secure = await phone.start_up()
    # Default mode: the bootstrap, and no password before the phone is secure.
    assert not bootstrap.secure and bootstrap.written[("goto-secure-mode", None)] == "nopin"
    assert bootstrap.written[("dls-secure-port", None)] == str(server.secure_port)
    assert ("sip-pwd", None) not in bootstrap.written
    assert phone.value("reg-addr") == "sip.example.net"
    # Secure mode: start-up on the secure port with the issued certificate; now the password.
    assert secure.secure and secure.reason == "start-up"
    assert secure.written == {("sip-pwd", None): "line-secret-1"}
    state = await admin.call("GET", f"/tenants/{tenant}/devices/{device}/wpi", expect=200)
    assert state["secure_since"] is not None

    # The MAC alone no longer opens a session on the default port.
    impostor = make_phone()
    (refused,) = await impostor.start_up()
    assert refused.actions == ["CleanUp"] and refused.written == {}
    # Nor does a device certificate of another phone on the secure port.
    other = issue_device_certificate(
        ensure_pki(load_settings(None, certs_dir=server.certs)), "001ae8999999"
    )
    bundle = tmp_path / "other.pem"
    bundle.write_bytes(other.certificate_pem + other.key_pem)
    thief = make_phone(items={("dls-client-certificate", None): bundle.read_text()})
    thief.items[("dls-server-ca", 1)] = server.ca_file.read_text()
    thief._go_secure()
    (stolen,) = await thief.start_up()
    assert stolen.secure and stolen.actions == ["CleanUp"]


async def test_restart_job_is_delivered_by_contact_me(
    admin: Admin, make_phone: Callable[..., UnifyPhone]
) -> None:
    tenant = await admin.customer("Restart Ltd")
    user = await admin.user(tenant, "restart-user", LINE)
    device = await admin.device(tenant, MAC, user)
    phone = make_phone()
    await phone.listen()
    await phone.start_up()
    job = await admin.job(tenant, device, "restart")
    await _until(phone, lambda p: len(p.interactions) == 3)
    solicited, restarted = phone.interactions[1:]
    assert solicited.actions == ["Restart", "CleanUp"] and solicited.replies == ["accepted"]
    assert restarted.reason == "start-up"
    assert await admin.job_state(tenant, device, job) == "accepted"
