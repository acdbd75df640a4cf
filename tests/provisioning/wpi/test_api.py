"""The admin endpoints of dls/api/wpi.py: device jobs, deployment PINs, secure-mode policy.

They live here, beside the device path they feed, and use the same channel world as the
other API tests (tests/api/world.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from dls import audit
from dls.app import build_admin_app
from dls.db.types import utcnow
from dls.devices.models import Device, DeviceStatus
from dls.devices.unify import WpiDevice
from dls.services import Services
from tests.api.world import World, build_world

pytestmark = pytest.mark.db

API = "/api/v1"


@pytest.fixture
async def admin(services: Services) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_admin_app(services))) as client:
        yield client


@pytest.fixture
async def world(services: Services) -> World:
    async with services.sessions() as session, session.begin():
        return await build_world(session)


async def _device(services: Services, tenant_id: str, mac: str, vendor: str = "unify") -> int:
    async with services.sessions() as session, session.begin():
        device = Device(
            mac=mac,
            vendor=vendor,
            model="OpenStage 40" if vendor == "unify" else "T46U",
            tenant_id=tenant_id,
            status=DeviceStatus.UNASSIGNED,
        )
        session.add(device)
        await session.flush()
        return device.id


async def _audit_actions(services: Services) -> list[str]:
    async with services.sessions() as session:
        return list((await session.scalars(select(audit.AuditEntry.action))).all())


async def test_jobs_are_created_listed_and_audited_within_the_tenant(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    device_id = await _device(services, tenant, "001ae8123456")
    jobs = f"{API}/tenants/{tenant}/devices/{device_id}/jobs"
    created = await admin.post(jobs, json={"kind": "restart"}, headers=world.auth("opted_in_admin"))
    assert created.status == 201, await created.text()
    job = await created.json()
    assert (job["kind"], job["state"], job["attempts"]) == ("restart", "pending", 0)
    firmware = {
        "kind": "software-deployment",
        "url": "https://dls.example.net/fw/os40.img",
        "version": "V3 R5.16.0",
    }
    created = await admin.post(jobs, json=firmware, headers=world.auth("alpha_partner"))
    assert created.status == 201  # a delegate administers the customer's phones too
    assert (await created.json())["payload"]["version"] == "3.5.16.0"
    listed = await admin.get(jobs, headers=world.auth("opted_in_admin"))
    assert [j["kind"] for j in (await listed.json())["items"]] == ["software-deployment", "restart"]
    assert (await _audit_actions(services)).count("device.job.restart") == 1

    # Another tenant's admin cannot even tell the device exists; a user may not queue jobs.
    other = await admin.post(jobs, json={"kind": "restart"}, headers=world.auth("opted_out_admin"))
    assert other.status == 404
    user = await admin.post(jobs, json={"kind": "restart"}, headers=world.auth("opted_in_user"))
    assert user.status == 403
    wrong_tenant = f"{API}/tenants/{world.tid('opted_out')}/devices/{device_id}/jobs"
    foreign = await admin.get(wrong_tenant, headers=world.auth("opted_out_admin"))
    assert foreign.status == 404


async def test_factory_reset_needs_the_customers_own_admin(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    device_id = await _device(services, tenant, "001ae8123456")
    jobs = f"{API}/tenants/{tenant}/devices/{device_id}/jobs"
    reset = {"kind": "factory-reset"}
    assert (await admin.post(jobs, json=reset, headers=world.auth("alpha_partner"))).status == 403
    assert (await admin.post(jobs, json=reset, headers=world.auth("opted_in_admin"))).status == 201
    assert "device.job.factory-reset" in await _audit_actions(services)


async def test_job_bodies_must_fit_their_kind_and_the_device(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    unify = await _device(services, tenant, "001ae8123456")
    yealink = await _device(services, tenant, "805ec0000001", vendor="yealink")
    headers = world.auth("opted_in_admin")
    url = f"{API}/tenants/{tenant}/devices/{unify}/jobs"
    no_files = await admin.post(url, json={"kind": "file-deployment"}, headers=headers)
    assert no_files.status == 422
    plain_http = {
        "kind": "file-deployment",
        "files": [{"url": "http://x.example/logo.png", "file_type": "LOGO"}],
    }
    assert (await admin.post(url, json=plain_http, headers=headers)).status == 422
    other = f"{API}/tenants/{tenant}/devices/{yealink}/jobs"
    assert (await admin.post(other, json={"kind": "restart"}, headers=headers)).status == 422


async def test_deployment_pin_is_read_by_its_user_and_admins_and_a_delegates_read_audited(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    user_id = world.users["opted_in_user"].id
    url = f"{API}/tenants/{tenant}/users/{user_id}/deployment-pin"
    assert (await admin.get(url, headers=world.auth("opted_in_user"))).status == 404
    made = await admin.post(url, json={"valid_days": 7}, headers=world.auth("opted_in_admin"))
    assert made.status == 201
    pin = (await made.json())["pin"]
    assert len(pin) == 8 and pin.isdigit()
    own = await admin.get(url, headers=world.auth("opted_in_user"))
    assert (await own.json())["pin"] == pin and (await own.json())["usable"]
    before = await _audit_actions(services)
    assert (await admin.get(url, headers=world.auth("opted_in_admin"))).status == 200
    assert await _audit_actions(services) == before  # an own admin's read is not audited
    delegate = await admin.get(url, headers=world.auth("alpha_partner"))
    assert (await delegate.json())["pin"] == pin
    assert (await _audit_actions(services))[-1] == "deployment_pin.read"
    # Another user of the tenant reads no one else's PIN; a stranger learns nothing.
    admin_id = world.users["opted_in_admin"].id
    peer = f"{API}/tenants/{tenant}/users/{admin_id}/deployment-pin"
    assert (await admin.get(peer, headers=world.auth("opted_in_user"))).status == 403
    assert (await admin.get(url, headers=world.auth("beta_partner"))).status == 404
    # Regenerating replaces it; the old one no longer matches.
    again = await admin.post(url, json={}, headers=world.auth("alpha_partner"))
    assert (await again.json())["pin"] != pin
    assert "deployment_pin.regenerate" in await _audit_actions(services)


async def test_secure_mode_policy_is_the_customers_own_decision(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    url = f"{API}/tenants/{tenant}/wpi-secure-mode"
    current = await admin.get(url, headers=world.auth("alpha_partner"))
    assert (await current.json())["mode"] == "bootstrap"
    refused = await admin.put(url, json={"mode": "off"}, headers=world.auth("alpha_partner"))
    assert refused.status == 403
    changed = await admin.put(url, json={"mode": "required"}, headers=world.auth("opted_in_admin"))
    assert (await changed.json())["mode"] == "required"
    assert "tenant.wpi_secure_mode" in await _audit_actions(services)


async def test_resetting_secure_mode_forgets_it_and_outranks_a_message_in_flight(
    admin: TestClient[Any, Any], world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    mac = "001ae8000077"
    device_id = await _device(services, tenant, mac)
    async with services.sessions() as session, session.begin():
        session.add(WpiDevice(mac=mac, secure_since=utcnow(), secure_refused=True, version=4))
    url = f"{API}/tenants/{tenant}/devices/{device_id}/secure-mode/reset"
    reset = await admin.post(url, json={}, headers=world.auth("opted_in_admin"))
    assert reset.status == 200
    assert (await reset.json())["secure_since"] is None
    async with services.sessions() as session:
        phone = await session.get(WpiDevice, mac)
    assert phone is not None and (phone.secure_since, phone.secure_refused) == (None, False)
    # A message that read the phone before the reset writes nothing: it is decided again.
    assert phone.version == 5
    assert "device.secure_mode.reset" in await _audit_actions(services)
    # A phone that never spoke WPI has nothing to reset.
    other = await _device(services, tenant, "001ae8000078")
    missing = f"{API}/tenants/{tenant}/devices/{other}/secure-mode/reset"
    assert (await admin.post(missing, json={}, headers=world.auth("opted_in_admin"))).status == 404


async def test_openapi_lists_the_unify_endpoints(admin: TestClient[Any, Any]) -> None:
    document = await (await admin.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert "/api/v1/tenants/{tenant_id}/devices/{device_id}/jobs" in paths
    assert "/api/v1/tenants/{tenant_id}/users/{user_id}/deployment-pin" in paths
