"""Fields a caller must not set (mass assignment), secrets that must not come back, and
what a partner acting as delegate may not do (reference §3, §9)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from dls.audit import AuditEntry
from dls.services import Services
from dls.tenancy.models import Dpa, Tenant, User
from tests.api.calls import V1, call, count, load, new_ticket_body, seed_ticket
from tests.api.world import World

pytestmark = pytest.mark.db


# --- mass assignment: fields the caller must not set ----------------------------------------

TENANT = "/tenants/{opted_in}"
USER = "/tenants/{opted_in}/users/{opted_in_user}"

TIMESTAMP = "2020-01-01T00:00:00+00:00"
OTHER_TENANT = "100000000001"
PROTECTED = [
    # (caller, method, path, a valid body, {protected field: a value to smuggle in})
    *[
        (
            caller,
            "PATCH",
            TENANT,
            {"name": "Renamed"},
            {
                "reseller_partner_id": "BETA000001",
                "distributor_partner_id": "BETA000001",
                "partner_admin_id": "ALPHA00001",
                "partner_access": False,
                "partner_access_expires_at": TIMESTAMP,
                "reseller_enabled": True,
                "tenant_id": OTHER_TENANT,
                "kind": "reseller",
                "order_id": "ORD-9",
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            },
        )
        for caller in ("opted_in_admin", "alpha_partner", "op")
    ],
    *[
        (
            caller,
            "PATCH",
            USER,
            {"display_name": "Renamed"},
            {
                "role": "tenant_admin",
                "tenant_id": OTHER_TENANT,
                "id": 1,
                "username": "root",
                "password_hash": "x",
                "created_at": TIMESTAMP,
            },
        )
        for caller in ("opted_in_admin", "alpha_partner")
    ],
    (
        "opted_in_admin",
        "POST",
        "/tenants/{opted_in}/users",
        {"username": "new.user"},
        {"tenant_id": OTHER_TENANT, "id": 1, "created_at": TIMESTAMP},
    ),
    (
        "opted_in_admin",
        "PUT",
        "/tenants/{opted_in}/partner-access",
        {"enabled": True},
        {"tenant_id": OTHER_TENANT, "changed_by": 1, "changed_at": TIMESTAMP, "active": True},
    ),
    ("opted_in_admin", "PUT", USER + "/role", {"role": "user"}, {"paid": True, "tenant_id": 1}),
    ("opted_in_admin", "POST", "/me/tokens", {"name": "script"}, {"user_id": 1, "prefix": "x"}),
    (
        "alpha_partner",
        "POST",
        "/tickets",
        None,
        {
            "number": "NA00000042",
            "reported_at": TIMESTAMP,
            "partner_account_id": OTHER_TENANT,
            "submitter_id": 1,
            "addressed_to": "operator",
            "state": "closed",
            "created_at": TIMESTAMP,
            "closed_at": TIMESTAMP,
        },
    ),
    (
        "alpha_partner",
        "PATCH",
        "/tickets/{ticket}",
        {"subject": "Renamed"},
        {
            "number": "NA00000042",
            "reported_at": TIMESTAMP,
            "partner_account_id": OTHER_TENANT,
            "customer_tenant_id": OTHER_TENANT,
            "submitter_id": 1,
            "addressed_to": "operator",
            "created_at": TIMESTAMP,
        },
    ),
]


@pytest.mark.parametrize(
    ("caller", "method", "path", "body", "smuggled"),
    PROTECTED,
    ids=[f"{caller}-{method} {path}" for caller, method, path, *_ in PROTECTED],
)
async def test_protected_fields_are_refused(
    client: TestClient[Any, Any],
    services: Services,
    world: World,
    caller: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    smuggled: dict[str, Any],
) -> None:
    ids = {
        "opted_in": world.tid("opted_in"),
        "opted_in_user": str(world.users["opted_in_user"].id),
        "ticket": await seed_ticket(services, world, "opted_in", "alpha"),
    }
    body = body if body is not None else new_ticket_body(world.tid("opted_in"))
    audit_before = await count(services, AuditEntry)
    wrong = []
    for name, value in smuggled.items():
        status, payload = await call(
            client, world, caller, method, path.format(**ids), {**body, name: value}
        )
        refusal = {"field": name, "message": "unknown field", "type": "extra_forbidden"}
        if status != 422 or refusal not in payload["details"]:
            wrong.append(f"{name}: {status} {payload}")
    assert not wrong
    assert await count(services, AuditEntry) == audit_before
    tenant = await load(services, Tenant, world.tid("opted_in"))
    assert (tenant.name, tenant.reseller_partner_id, tenant.partner_access) == (
        "opted_in",
        "ALPHA00001",
        True,
    )
    user = await load(services, User, world.users["opted_in_user"].id)
    assert (user.role, user.display_name) == ("user", "Opted_In_User")


async def test_responses_carry_no_secrets(client: TestClient[Any, Any], world: World) -> None:
    for caller, path in (
        ("opted_in_admin", f"/tenants/{world.tid('opted_in')}/users"),
        ("opted_in_admin", "/me/tokens"),
        ("opted_in_admin", "/me"),
        ("op", "/audit"),
    ):
        response = await client.get(V1 + path, headers=world.auth(caller))
        text_body = await response.text()
        assert response.status == 200
        for secret in ("password_hash", "token_hash", world.tokens[caller]):
            assert secret not in text_body, (path, secret)


# --- what delegates may not do (§3) -----------------------------------------------------------


async def _delegate_exclusions(services: Services, world: World) -> list[tuple[str, str, Any]]:
    customer = world.tid("eu_dpa")
    async with services.sessions() as session:
        dpa_id = await session.scalar(select(Dpa.id).where(Dpa.to_tenant_id == customer))
    user = world.users["eu_dpa_user"].id
    admin = world.users["eu_dpa_admin"].id
    partner = world.users["alpha_partner"].id
    return [
        ("PUT", f"/tenants/{customer}/partner-access", {"enabled": False}),
        ("PUT", f"/tenants/{customer}/partner-access", {"enabled": True}),
        (
            "POST",
            f"/tenants/{customer}/dpas",
            {
                "counterparty_tenant_id": world.tid("alpha"),
                "direction": "outgoing",
                "signed_on": "2026-02-01",
            },
        ),
        ("POST", f"/tenants/{customer}/dpas/{dpa_id}/withdraw", None),
        ("PUT", f"/tenants/{customer}/partner-ids", {"reseller_partner_id": "ALPHA00001"}),
        ("PUT", f"/tenants/{customer}/partner-ids", {"reseller_partner_id": "BETA000001"}),
        ("PATCH", f"/tenants/{customer}", {"eu": False}),
        ("PUT", f"/tenants/{customer}/users/{user}/role", {"role": "tenant_admin"}),
        ("PUT", f"/tenants/{customer}/users/{admin}/role", {"role": "user"}),
        ("PUT", f"/tenants/{customer}/users/{partner}/role", {"role": "tenant_admin"}),
        (
            "POST",
            f"/tenants/{customer}/users",
            {"username": "partner.shadow", "role": "tenant_admin", "password": "x" * 16},
        ),
        ("PATCH", f"/tenants/{customer}/users/{admin}", {"disabled": True}),
        ("PATCH", f"/tenants/{customer}/users/{admin}", {"password": "y" * 16}),
    ]


async def test_delegates_cannot_touch_consent_dpas_partner_ids_or_admin_roles(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    # eu_dpa: an opted-in EU customer with DPAs both ways, so the delegate's standing holds.
    customer = world.tid("eu_dpa")
    status, _ = await call(client, world, "alpha_partner", "GET", f"/tenants/{customer}/users")
    assert status == 200
    dpas_before = await count(services, Dpa)
    audit_before = await count(services, AuditEntry)
    for method, path, body in await _delegate_exclusions(services, world):
        status, _ = await call(client, world, "alpha_partner", method, path, body)
        assert status == 403, (method, path, body)
    tenant = await load(services, Tenant, customer)
    assert (tenant.partner_access, tenant.reseller_partner_id, tenant.eu) == (
        True,
        "ALPHA00001",
        True,
    )
    assert await count(services, Dpa) == dpas_before
    async with services.sessions() as session:
        withdrawn = await session.scalar(
            select(func.count()).select_from(Dpa).where(Dpa.withdrawn_at.is_not(None))
        )
        roles = {u.username: (u.role, u.disabled) for u in await session.scalars(select(User))}
    assert withdrawn == 0
    assert roles["eu_dpa_user"] == ("user", False)
    assert roles["eu_dpa_admin"] == ("tenant_admin", False)
    assert roles["alpha_partner"] == ("partner_admin", False)
    assert "partner.shadow" not in roles
    assert await count(services, AuditEntry) == audit_before
