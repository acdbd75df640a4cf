"""Partner IDs that must never match (reference §9): empty, padded, case variants and
look-alikes are refused at input, and never match when forced into the database."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dls.services import Services
from dls.tenancy.models import Tenant
from tests.api.calls import call, change_tenant, count, load, new_ticket_body
from tests.api.world import World, add_relations

pytestmark = pytest.mark.db


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
