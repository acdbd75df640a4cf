"""Function- and object-level authorization (reference §9.1, §9.2): a plain user calling
admin functions, also by switching methods, and tenant IDs smuggled into paths, bodies,
queries and headers finding nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from dls.audit import AuditEntry
from dls.devices.models import Device, DeviceGroup
from dls.services import Services
from dls.tenancy.models import Dpa, Tenant, User
from tests.api.calls import call, count, load, new_ticket_body, seed_ticket
from tests.api.world import World

pytestmark = pytest.mark.db


# --- BFLA: a plain user calling admin functions, also by switching methods -------------------


def _bfla_calls(world: World) -> list[tuple[str, str, Any, int]]:
    own = world.tid("opted_in")
    other = world.tid("opted_out")
    me = world.users["opted_in_user"].id
    colleague = world.users["opted_in_admin"].id
    return [
        ("GET", f"/tenants/{own}/users", None, 403),
        ("POST", f"/tenants/{own}/users", {"username": "sneaky.user"}, 403),
        ("PATCH", f"/tenants/{own}", {"self_setup_allowed": False}, 403),
        ("PATCH", f"/tenants/{own}/users/{me}", {"self_setup_override": True}, 403),
        ("PATCH", f"/tenants/{own}/users/{colleague}", {"disabled": True}, 403),
        ("PUT", f"/tenants/{own}/users/{me}/role", {"role": "tenant_admin"}, 403),
        ("PUT", f"/tenants/{own}/partner-access", {"enabled": False}, 403),
        ("GET", f"/tenants/{own}/partner-access", None, 403),
        ("GET", f"/tenants/{own}/audit", None, 403),
        ("GET", "/audit", None, 403),
        ("GET", "/tenants", None, 403),
        ("POST", "/orders", {"order_id": "ORD-1", "name": "Mine", "country": "US"}, 403),
        ("GET", "/tickets", None, 403),
        (
            "POST",
            f"/tenants/{own}/devices",
            {"mac": "001565aa0001", "vendor": "yealink", "model": "T46U"},
            403,
        ),
        ("PUT", f"/tenants/{own}/settings", {"settings": {}}, 403),
        ("GET", f"/tenants/{own}/devices", None, 403),
        # Methods the routes do not have.
        ("PUT", f"/tenants/{own}", {"self_setup_allowed": False}, 405),
        ("DELETE", f"/tenants/{own}", None, 405),
        ("POST", f"/tenants/{own}/partner-access", {"enabled": False}, 405),
        ("PATCH", f"/tenants/{own}/partner-access", {"enabled": False}, 405),
        ("DELETE", f"/tenants/{own}/partner-access", None, 405),
        ("DELETE", f"/tenants/{own}/users/{colleague}", None, 405),
        ("PATCH", f"/tenants/{own}/users/{me}/role", {"role": "tenant_admin"}, 405),
        ("PUT", f"/tenants/{own}/users/{me}", {"display_name": "x"}, 405),
        ("DELETE", f"/tenants/{own}/dpas", None, 405),
        # Another tenant, whatever the method: no standing.
        ("PATCH", f"/tenants/{other}", {"self_setup_allowed": False}, 404),
        ("GET", f"/tenants/{other}/users", None, 404),
    ]


async def test_plain_users_cannot_reach_admin_functions(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    audit_before = await count(services, AuditEntry)
    wrong = []
    for method, path, body, expected in _bfla_calls(world):
        status, _ = await call(client, world, "opted_in_user", method, path, body)
        if status != expected:
            wrong.append(f"{method} {path}: expected {expected}, got {status}")
    assert not wrong
    assert await count(services, AuditEntry) == audit_before
    user = await load(services, User, world.users["opted_in_user"].id)
    assert (user.role, user.self_setup_override) == ("user", None)
    assert (await load(services, Tenant, world.tid("opted_in"))).self_setup_allowed is True


# --- tenant-context injection (§9.2, BOLA §9.1) -------------------------------------------------


async def test_foreign_ids_under_an_own_path_find_nothing(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    own = world.tid("opted_in")
    foreign_user = world.users["opted_out_user"].id
    async with services.sessions() as session, session.begin():
        foreign_dpa = await session.scalar(
            select(Dpa.id).where(Dpa.from_tenant_id == world.tid("eu_dpa"))
        )
        devices = {
            name: Device(
                mac=f"001565aa000{n}",
                vendor="yealink",
                model="T46U",
                tenant_id=world.tid(name),
            )
            for n, name in enumerate(("opted_in", "opted_out"))
        }
        group = DeviceGroup(tenant_id=world.tid("opted_out"), name="Reception")
        session.add_all([*devices.values(), group])
        await session.flush()
    own_device, foreign_device = devices["opted_in"].id, devices["opted_out"].id
    settings = {"settings": {"time": {"time_zone": "Europe/Berlin"}}}
    audit_before = await count(services, AuditEntry)
    cases = [
        ("opted_in_admin", "GET", f"/tenants/{own}/users/{foreign_user}", None),
        ("opted_in_admin", "PATCH", f"/tenants/{own}/users/{foreign_user}", {"disabled": True}),
        (
            "opted_in_admin",
            "PUT",
            f"/tenants/{own}/users/{foreign_user}/role",
            {"role": "tenant_admin"},
        ),
        ("opted_in_admin", "POST", f"/tenants/{own}/dpas/{foreign_dpa}/withdraw", None),
        (
            "opted_in_admin",
            "POST",
            f"/tenants/{own}/dpas",
            {
                "counterparty_tenant_id": world.tid("opted_out"),
                "direction": "incoming",
                "signed_on": "2026-02-01",
            },
        ),
        ("opted_in_admin", "POST", "/tickets", new_ticket_body(world.tid("opted_out"))),
        ("opted_in_admin", "GET", f"/tenants/{own}/devices/{foreign_device}", None),
        ("opted_in_admin", "POST", f"/tenants/{own}/devices/{foreign_device}/retire", None),
        (
            "opted_in_admin",
            "POST",
            f"/tenants/{own}/devices/{foreign_device}/digest-credentials",
            {},
        ),
        ("opted_in_admin", "PUT", f"/tenants/{own}/devices/{foreign_device}/settings", settings),
        ("opted_in_admin", "PUT", f"/tenants/{own}/users/{foreign_user}/settings", settings),
        ("opted_in_admin", "PUT", f"/tenants/{own}/groups/{group.id}/settings", settings),
        # A delegate, through the customer it may manage, at another customer's objects.
        ("alpha_partner", "GET", f"/tenants/{own}/users/{foreign_user}", None),
        ("alpha_partner", "PATCH", f"/tenants/{own}/users/{foreign_user}", {"disabled": True}),
        ("alpha_partner", "PATCH", f"/tenants/{own}/devices/{foreign_device}", {"user_line": 2}),
    ]
    for caller, method, path, body in cases:
        status, _ = await call(client, world, caller, method, path, body)
        assert status == 404, (caller, method, path)
    # Another tenant's user or group as the assignment of an own device: refused, unchanged.
    for body in ({"user_id": foreign_user}, {"group_id": group.id}):
        path = f"/tenants/{own}/devices/{own_device}"
        status, _ = await call(client, world, "opted_in_admin", "PATCH", path, body)
        assert status == 422, body
    device = await load(services, Device, own_device)
    assert (device.user_id, device.group_id) == (None, None)
    device = await load(services, Device, foreign_device)
    assert (device.status, device.digest_password) == ("unassigned", None)
    user = await load(services, User, foreign_user)
    assert (user.role, user.disabled) == ("user", False)
    assert (await load(services, Dpa, foreign_dpa)).withdrawn_at is None
    assert await count(services, AuditEntry) == audit_before


async def test_tenant_ids_in_body_query_or_header_are_not_the_context(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    own, other = world.tid("opted_in"), world.tid("opted_out")
    users_before = await count(services, User)

    status, _ = await call(
        client,
        world,
        "opted_in_admin",
        "POST",
        f"/tenants/{own}/users",
        {"username": "planted.user", "tenant_id": other},
    )
    assert status == 422
    status, _ = await call(
        client, world, "opted_in_admin", "GET", f"/tenants/{own}/users", params={"tenant_id": other}
    )
    assert status == 422
    assert await count(services, User) == users_before

    # Headers naming another tenant change nothing: the path and the token decide.
    injected = {"X-Tenant-Id": other, "X-Tenant": other, "X-Forwarded-Tenant": other}
    status, page = await call(
        client, world, "opted_in_admin", "GET", f"/tenants/{own}/users", headers=injected
    )
    assert status == 200
    assert {u["tenant_id"] for u in page["items"]} == {own}
    status, _ = await call(
        client,
        world,
        "opted_in_admin",
        "GET",
        f"/tenants/{other}/users",
        headers={"X-Tenant-Id": own},
    )
    assert status == 404

    # A filter on another customer's tickets stays inside what the caller sees.
    await seed_ticket(services, world, "opted_out", "alpha")
    status, page = await call(
        client,
        world,
        "opted_in_admin",
        "GET",
        "/tickets",
        params={"customer_tenant_id": other},
    )
    assert (status, page["items"]) == (200, [])
    status, page = await call(
        client, world, "beta_partner", "GET", "/tickets", params={"customer_tenant_id": other}
    )
    assert (status, page["items"]) == (200, [])
