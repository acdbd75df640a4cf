"""The explicit security cases of the delegated-admin rules (reference §9), through the API.

The authorization matrix (``test_matrix.py``) covers route x caller x relation; this
module covers what a matrix cell cannot: state changing between two requests of one token,
the clock at the expiry boundary, IDs that must never match, bodies carrying fields the
caller must not set, method switching, tenant IDs smuggled into bodies and headers, and
the audit log's immutability down to SQL.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import dls.db.types
from dls.api import API_PREFIX, api
from dls.audit import AuditEntry
from dls.devices.models import Device, DeviceGroup
from dls.services import Services
from dls.tenancy.models import Dpa, Tenant, User
from dls.tickets.models import Addressee, Ticket
from tests.api.world import World, add_relations

pytestmark = pytest.mark.db

V1 = API_PREFIX


async def call(
    client: TestClient[Any, Any],
    world: World,
    caller: str,
    method: str,
    path: str,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {**world.auth(caller), **kwargs.pop("headers", {})}
    response = await client.request(method, V1 + path, json=body, headers=headers, **kwargs)
    payload = await response.json() if response.content_type == "application/json" else None
    return response.status, payload


async def load(services: Services, model: type[Any], key: Any) -> Any:
    async with services.sessions() as session:
        return await session.get(model, key)


async def count(services: Services, model: type[Any]) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def change_tenant(services: Services, tenant_id: str, **values: Any) -> None:
    """Write straight to the database, past the API's input validation."""
    async with services.sessions() as session, session.begin():
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        for key, value in values.items():
            setattr(tenant, key, value)


# --- consent: re-decided on every request -------------------------------------------------


async def test_switching_partner_access_off_denies_the_very_next_request(
    client: TestClient[Any, Any], world: World
) -> None:
    customer = world.tid("opted_in")
    status, _ = await call(client, world, "alpha_partner", "GET", f"/tenants/{customer}/users")
    assert status == 200

    status, body = await call(
        client,
        world,
        "opted_in_admin",
        "PUT",
        f"/tenants/{customer}/partner-access",
        {"enabled": False},
    )
    assert (status, body["active"]) == (200, False)

    for method, path, payload in (
        ("GET", f"/tenants/{customer}/users", None),
        ("GET", f"/tenants/{customer}", None),
        ("PATCH", f"/tenants/{customer}", {"self_setup_allowed": False}),
    ):
        status, _ = await call(client, world, "alpha_partner", method, path, payload)
        assert status == 404, (method, path)
    _, picker = await call(client, world, "alpha_partner", "GET", "/partner/tenants")
    entry = next(e for e in picker["items"] if e["tenant_id"] == customer)
    assert (entry["manageable"], entry["reasons"]) == (False, ["opted_in"])


async def _withdraw_dpa(client: TestClient[Any, Any], world: World, services: Services) -> int:
    customer = world.tid("eu_dpa")
    async with services.sessions() as session:
        dpa = await session.scalar(select(Dpa.id).where(Dpa.from_tenant_id == customer))
    status, _ = await call(
        client, world, "eu_dpa_admin", "POST", f"/tenants/{customer}/dpas/{dpa}/withdraw"
    )
    return status


async def _reseller_role_off(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('alpha')}/reseller-role"
    return (await call(client, world, "op", "PUT", path, {"enabled": False}))[0]


async def _relink(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('eu_dpa')}/partner-ids"
    return (await call(client, world, "op", "PUT", path, {"reseller_partner_id": "BETA000001"}))[0]


async def _unlink(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('eu_dpa')}/partner-ids"
    return (await call(client, world, "op", "PUT", path, {"reseller_partner_id": None}))[0]


@pytest.mark.parametrize(
    "breaks_the_link",
    [_withdraw_dpa, _reseller_role_off, _relink, _unlink],
    ids=[
        "customer withdraws a DPA",
        "operator disables the reseller role",
        "operator relinks",
        "operator unlinks",
    ],
)
async def test_a_broken_link_denies_the_very_next_request(
    client: TestClient[Any, Any],
    services: Services,
    world: World,
    breaks_the_link: Callable[[TestClient[Any, Any], World, Services], Awaitable[int]],
) -> None:
    # §2 checks 1, 3 and 5 are re-read on every request, like the opt-in (check 4).
    path = f"/tenants/{world.tid('eu_dpa')}/users"
    assert (await call(client, world, "alpha_partner", "GET", path))[0] == 200
    assert await breaks_the_link(client, world, services) == 200
    assert (await call(client, world, "alpha_partner", "GET", path))[0] == 404


class FrozenClock:
    """Every ``utcnow()`` in dls answers ``at``.

    ``Call.now`` is a dataclass default factory bound to ``dls.db.types.utcnow`` when the
    class was built, so patching the name ``utcnow`` elsewhere would not reach it; the
    clock is replaced where that function reads it instead.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
        self.at = at
        clock = self

        class FrozenDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
                return clock.at.astimezone(tz) if tz else clock.at.replace(tzinfo=None)

        monkeypatch.setattr(
            dls.db.types, "dt", types.SimpleNamespace(datetime=FrozenDatetime, UTC=dt.UTC)
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return FrozenClock(monkeypatch, start)


@pytest.mark.parametrize(
    ("before_expiry", "expected"),
    [(dt.timedelta(seconds=1), 200), (dt.timedelta(0), 404), (dt.timedelta(seconds=-1), 404)],
    ids=["expires_at-1s", "expires_at", "expires_at+1s"],
)
async def test_consent_expires_at_the_second(
    client: TestClient[Any, Any],
    world: World,
    clock: FrozenClock,
    before_expiry: dt.timedelta,
    expected: int,
) -> None:
    customer = world.tid("opted_out")
    expires_at = clock.at + dt.timedelta(days=30)
    status, _ = await call(
        client,
        world,
        "opted_out_admin",
        "PUT",
        f"/tenants/{customer}/partner-access",
        {"enabled": True, "expires_at": expires_at.isoformat()},
    )
    assert status == 200

    clock.at = expires_at - before_expiry
    status, _ = await call(client, world, "alpha_partner", "GET", f"/tenants/{customer}/users")
    assert status == expected
    _, consent = await call(
        client, world, "opted_out_admin", "GET", f"/tenants/{customer}/partner-access"
    )
    assert consent["active"] is (expected == 200)


# --- partner IDs that must never match ----------------------------------------------------

# Empty, blank, padded, case variants and look-alikes of ALPHA00001 (alpha's Partner Admin ID).
BAD_PARTNER_IDS = [
    "",
    " ",
    "\t",
    "ALPHA00001 ",
    " ALPHA00001",
    "ALPHA00001\n",
    "alpha00001",
    "Alpha00001",
    "\u0410LPHA00001",  # Cyrillic A
    "ALPHA0000\uff11",  # fullwidth digit one
    "\uff21\uff2c\uff30\uff28\uff21\uff10\uff10\uff10\uff10\uff11",  # fullwidth ALPHA00001
    "ALPHA\u00a000001",  # no-break space
    "ALPHA00001\u200b",  # zero-width space
]


def _partner_id_inputs(world: World, value: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(field, method, path, body) for every way a partner ID comes in."""
    customer, reseller = world.tid("unlinked"), world.tid("alpha")
    order = {"order_id": "ORD-1", "name": "New Customer", "country": "US"}
    return [
        (field, "PUT", f"/tenants/{customer}/partner-ids", {field: value})
        for field in ("reseller_partner_id", "distributor_partner_id")
    ] + [
        (
            "partner_admin_id",
            "PUT",
            f"/tenants/{reseller}/partner-ids",
            {"partner_admin_id": value},
        ),
        ("reseller_partner_id", "POST", "/orders", {**order, "reseller_partner_id": value}),
        ("distributor_partner_id", "POST", "/orders", {**order, "distributor_partner_id": value}),
    ]


async def test_malformed_partner_ids_are_refused_at_input(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    tenants_before = await count(services, Tenant)
    wrong = []
    for value in BAD_PARTNER_IDS:
        for field, method, path, body in _partner_id_inputs(world, value):
            status, payload = await call(client, world, "op", method, path, body)
            named = payload["details"][0]["field"] if status == 422 else None
            if (status, named) != (422, field):
                wrong.append(f"{method} {path} {field}={value!a}: {status} {payload}")
    assert not wrong
    customer = await load(services, Tenant, world.tid("unlinked"))
    assert (customer.reseller_partner_id, customer.distributor_partner_id) == (None, "DIST000001")
    assert (await load(services, Tenant, world.tid("alpha"))).partner_admin_id == "ALPHA00001"
    assert await count(services, Tenant) == tenants_before


@pytest.mark.parametrize("sides", ["both sides", "customer side"])
async def test_stored_malformed_partner_ids_never_match(
    client: TestClient[Any, Any], services: Services, world: World, sides: str
) -> None:
    # Written past the API's validation. Both sides equal ("" == "", NULL == NULL,
    # "alpha00001" == "alpha00001"), or the customer's variant against the reseller's real
    # ID: never a link, for acting on behalf, for the picker, or for raising a ticket.
    customer = world.tid("opted_in")
    wrong = []
    for value in [None, *BAD_PARTNER_IDS]:
        await change_tenant(services, customer, reseller_partner_id=value)
        if sides == "both sides":
            await change_tenant(services, world.tid("alpha"), partner_admin_id=value)
        answers = [
            (await call(client, world, "alpha_partner", method, path, body))[0]
            for method, path, body in (
                ("GET", f"/tenants/{customer}", None),
                ("PATCH", f"/tenants/{customer}", {"name": "Taken"}),
                ("POST", "/tickets", new_ticket_body(customer)),
            )
        ]
        _, picker = await call(client, world, "alpha_partner", "GET", "/partner/tenants")
        listed = customer in {e["tenant_id"] for e in picker["items"]}
        if answers != [404, 404, 404] or listed:
            wrong.append(f"{value!a}: {answers}, listed in the picker: {listed}")
    assert not wrong


@pytest.mark.parametrize("caller", ["alpha_unpaid_partner", "gamma_partner", "plain_dist_partner"])
async def test_the_picker_lists_nothing_for_a_partner_failing_checks_1_and_2(
    client: TestClient[Any, Any], services: Services, world: World, caller: str
) -> None:
    # §2: "The customer picker lists exactly the tenants passing checks 1-5." Checks 1 (the
    # reseller role) and 2 (a paid partner admin) are about the caller, so no tenant can
    # pass: not even the names of the reseller's customers may be listed.
    async with services.sessions() as session, session.begin():
        await add_relations(session, world)
    status, picker = await call(client, world, caller, "GET", "/partner/tenants")
    assert status in (200, 403)
    listed = [entry["name"] for entry in picker["items"]] if status == 200 else []
    assert listed == [], f"{caller} sees the customers {listed}"


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


def new_ticket_body(customer_tenant_id: str) -> dict[str, Any]:
    return {
        "customer_tenant_id": customer_tenant_id,
        "subject": "Phones reboot",
        "description": "Every hour on the hour.",
        "support_level": 3,
        "language": "de",
        "occurred_at": "2026-01-01T08:00:00+00:00",
    }


async def seed_ticket(services: Services, world: World, customer: str, partner: str) -> str:
    async with services.sessions() as session, session.begin():
        at = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
        session.add(
            Ticket(
                number="NA00000777",
                customer_tenant_id=world.tid(customer),
                partner_account_id=world.tid(partner),
                addressed_to=Addressee.RESELLER,
                subject="Phones reboot",
                description="Every hour on the hour.",
                support_level=3,
                language="de",
                company=customer,
                occurred_at=at,
                reported_at=at,
                submitter_id=world.users[f"{partner}_partner"].id,
                requester="Front desk",
            )
        )
    return "NA00000777"


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


# --- the audit log: append-only through the API and in SQL -------------------------------------


async def _audited_write(client: TestClient[Any, Any], world: World) -> None:
    status, _ = await call(
        client, world, "opted_in_admin", "PATCH", f"/tenants/{world.tid('opted_in')}", {"name": "x"}
    )
    assert status == 200


async def test_no_route_changes_the_audit_log(
    client: TestClient[Any, Any], services: Services, world: World
) -> None:
    await _audited_write(client, world)
    async with services.sessions() as session:
        entry = await session.scalar(select(AuditEntry))
    assert entry is not None
    writes = [
        f"{e.method} {e.path}" for e in api.endpoints if "audit" in e.path and e.method != "GET"
    ]
    assert writes == []

    tenant = world.tid("opted_in")
    wrong = []
    for caller in ("op", "opted_in_admin", "alpha_partner"):
        for path in ("/audit", f"/tenants/{tenant}/audit"):
            for suffix in ("", f"/{entry.id}"):
                for method in ("PUT", "PATCH", "DELETE", "POST"):
                    status, _ = await call(
                        client, world, caller, method, path + suffix, {"action": "erased"}
                    )
                    if status not in (404, 405):
                        wrong.append(f"{caller} {method} {path}{suffix}: {status}")
    assert not wrong
    async with services.sessions() as session:
        after = await session.get(AuditEntry, entry.id)
    assert after is not None
    assert (after.action, after.changes) == (entry.action, entry.changes)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET action = 'erased'",
        "UPDATE audit_entries SET via = 'direct' WHERE via = 'partner'",
        "DELETE FROM audit_entries",
        "DELETE FROM audit_entries WHERE id = (SELECT MIN(id) FROM audit_entries)",
    ],
)
async def test_the_database_refuses_to_change_audit_entries(
    client: TestClient[Any, Any], engine: AsyncEngine, world: World, statement: str
) -> None:
    await _audited_write(client, world)
    status, _ = await call(
        client, world, "alpha_partner", "PATCH", f"/tenants/{world.tid('opted_in')}", {"name": "y"}
    )
    assert status == 200
    async with engine.connect() as connection:
        before = (await connection.execute(text("SELECT * FROM audit_entries"))).all()
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    async with engine.connect() as connection:
        after = (await connection.execute(text("SELECT * FROM audit_entries"))).all()
    assert len(before) == 2
    assert after == before


async def test_postgresql_refuses_truncating_the_audit_log(
    client: TestClient[Any, Any], engine: AsyncEngine, world: World
) -> None:
    # Row triggers do not fire on TRUNCATE: an append-only log needs a statement-level
    # BEFORE TRUNCATE trigger (or the privilege revoked) as well.
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is covered above")
    await _audited_write(client, world)
    with pytest.raises(DBAPIError):
        async with engine.begin() as connection:
            await connection.execute(text("TRUNCATE audit_entries"))
    async with engine.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM audit_entries"))).scalar() == 1


# --- user self-setup: forbidden by the customer, re-enabled by its partner (§9.12) --------------


async def test_self_setup_forbidden_then_re_enabled_by_the_partner_is_audited(
    client: TestClient[Any, Any], world: World
) -> None:
    customer = world.tid("opted_in")
    user = world.users["opted_in_user"].id

    async def effective() -> bool:
        _, me = await call(client, world, "opted_in_user", "GET", "/me")
        return bool(me["self_setup_allowed"])

    status, _ = await call(
        client,
        world,
        "opted_in_admin",
        "PATCH",
        f"/tenants/{customer}",
        {"self_setup_allowed": False},
    )
    assert status == 200
    assert await effective() is False
    # The user cannot lift the ban, neither for the tenant nor for itself.
    for path, body in (
        (f"/tenants/{customer}", {"self_setup_allowed": True}),
        (f"/tenants/{customer}/users/{user}", {"self_setup_override": True}),
    ):
        status, _ = await call(client, world, "opted_in_user", "PATCH", path, body)
        assert status == 403
    assert await effective() is False

    status, _ = await call(
        client,
        world,
        "alpha_partner",
        "PATCH",
        f"/tenants/{customer}",
        {"self_setup_allowed": True},
    )
    assert status == 200
    assert await effective() is True

    expected = {
        "actor_user_id": world.users["alpha_partner"].id,
        "actor_tenant_id": world.tid("alpha"),
        "target_tenant_id": customer,
        "via": "partner",
        "action": "tenant.update",
        "changes": {"self_setup_allowed": {"old": False, "new": True}},
    }
    for reader, path in (
        ("opted_in_admin", f"/tenants/{customer}/audit"),
        ("alpha_partner", "/audit"),
        ("op", "/audit"),
    ):
        status, log = await call(client, world, reader, "GET", path)
        assert status == 200
        latest = log["items"][0]
        assert {key: latest[key] for key in expected} == expected, reader
    status, log = await call(client, world, "opted_in_admin", "GET", f"/tenants/{customer}/audit")
    assert [e["via"] for e in log["items"]] == ["partner", "direct"]


async def test_a_delegate_may_set_one_users_self_setup(
    client: TestClient[Any, Any], world: World
) -> None:
    customer = world.tid("opted_in")
    user = world.users["opted_in_user"].id
    status, body = await call(
        client,
        world,
        "alpha_partner",
        "PATCH",
        f"/tenants/{customer}/users/{user}",
        {"self_setup_override": False},
    )
    assert (status, body["self_setup_allowed"]) == (200, False)
    _, log = await call(client, world, "opted_in_admin", "GET", f"/tenants/{customer}/audit")
    entry = log["items"][0]
    assert (entry["via"], entry["action"], entry["object_id"]) == (
        "partner",
        "user.update",
        str(user),
    )


async def test_a_delegate_reading_a_deployment_pin_is_audited(
    client: TestClient[Any, Any], world: World
) -> None:
    # §5: delegate reads of secrets such as deployment PINs are audited.
    if "GET /tenants/{tenant_id}/users/{user_id}/deployment-pin" not in {
        f"{e.method} {e.path.removeprefix(API_PREFIX)}" for e in api.endpoints
    }:
        pytest.skip("no deployment PINs in this tree")
    customer = world.tid("opted_in")
    path = f"/tenants/{customer}/users/{world.users['opted_in_user'].id}/deployment-pin"
    status, _ = await call(client, world, "opted_in_admin", "POST", path, {"line": 1})
    assert status == 201
    status, pin = await call(client, world, "alpha_partner", "GET", path)
    assert status == 200
    _, log = await call(client, world, "opted_in_admin", "GET", f"/tenants/{customer}/audit")
    entry = log["items"][0]
    assert (entry["action"], entry["via"], entry["actor_user_id"]) == (
        "deployment_pin.read",
        "partner",
        world.users["alpha_partner"].id,
    )
    assert pin["pin"] not in str(log)


# --- the token itself -------------------------------------------------------------------------


async def test_a_logged_out_token_is_refused(client: TestClient[Any, Any], world: World) -> None:
    status, _ = await call(client, world, "alpha_partner", "POST", "/auth/logout")
    assert status == 204
    status, _ = await call(client, world, "alpha_partner", "GET", "/me")
    assert status == 401
