"""Support tickets through the admin API: who raises, sees, works and escalates which ticket.

The cases of the reference's security test 13, plus the customer → partner → operator
flow with internal comments, history and audit.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from tests.api.world import World

pytestmark = pytest.mark.db

Client = TestClient[Any, Any]
TICKETS = "/api/v1/tickets"


def ticket_body(customer_tenant_id: str, /, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_tenant_id": customer_tenant_id,
        "subject": "Phones in the lobby do not register",
        "description": "Since this morning the two phones in the lobby show 'no service'.",
        "support_level": 2,
        "language": "en-GB",
        "occurred_at": "2026-01-10T08:30:00+01:00",
        "requester": "Dana Desk <dana@example.com>",
    }
    body.update(overrides)
    return body


async def raise_ticket(
    client: Client, world: World, caller: str, customer: str, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        TICKETS, json=ticket_body(world.tid(customer), **overrides), headers=world.auth(caller)
    )
    assert response.status == 201, await response.text()
    return await response.json()


async def numbers_seen(client: Client, world: World, caller: str, query: str = "") -> set[str]:
    response = await client.get(f"{TICKETS}{query}", headers=world.auth(caller))
    assert response.status == 200, await response.text()
    return {item["number"] for item in (await response.json())["items"]}


# --- raising ------------------------------------------------------------------------------


@pytest.mark.parametrize("customer", ["opted_in", "opted_out", "expired", "eu_dpa"])
async def test_partner_raises_for_a_linked_customer_with_or_without_opt_in(
    client: Client, world: World, customer: str
) -> None:
    ticket = await raise_ticket(client, world, "alpha_partner", customer)

    assert re.fullmatch(r"NA[0-9]{8}", ticket["number"])
    assert ticket["customer_tenant_id"] == world.tid(customer)
    assert ticket["partner_account_id"] == world.tid("alpha")
    assert ticket["addressed_to"] == "reseller"
    assert ticket["state"] == "open"
    assert ticket["submitter_id"] == world.users["alpha_partner"].id
    assert ticket["requester"] == "Dana Desk <dana@example.com>"
    assert ticket["company"] == customer  # the customer's name by default
    assert ticket["occurred_at"].startswith("2026-01-10T07:30:00")  # stored in UTC
    reported = dt.datetime.fromisoformat(ticket["reported_at"])
    assert abs(reported - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert ticket["comments"] == [] and ticket["history"] == []


@pytest.mark.parametrize(
    "customer",
    [
        "unlinked",
        "other_reseller",  # beta's customer
        "gamma_customer",
        "eu_no_dpa",  # EU customer with a DPA in one direction only
        "alpha",  # the partner's own tenant is no customer
        "operator",
    ],
)
async def test_partner_cannot_raise_for_a_customer_it_is_not_linked_to(
    client: Client, world: World, customer: str
) -> None:
    response = await client.post(
        TICKETS, json=ticket_body(world.tid(customer)), headers=world.auth("alpha_partner")
    )
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_unknown_customer_tenant_is_404(client: Client, world: World) -> None:
    response = await client.post(
        TICKETS, json=ticket_body("999999999999"), headers=world.auth("alpha_partner")
    )
    assert response.status == 404


@pytest.mark.parametrize("caller", ["gamma_partner", "alpha_unpaid_partner", "opted_in_user"])
async def test_callers_without_ticket_standing_are_refused(
    client: Client, world: World, caller: str
) -> None:
    # gamma's reseller role is off; an unpaid partner admin fails check 2; a plain user has
    # no ticket rights in the matrix.
    customer = "gamma_customer" if caller == "gamma_partner" else "opted_in"
    raised = await client.post(
        TICKETS, json=ticket_body(world.tid(customer)), headers=world.auth(caller)
    )
    assert raised.status == 403
    listed = await client.get(TICKETS, headers=world.auth(caller))
    assert listed.status == 403


async def test_customer_admin_raises_only_for_its_own_tenant(client: Client, world: World) -> None:
    response = await client.post(
        TICKETS, json=ticket_body(world.tid("opted_out")), headers=world.auth("opted_in_admin")
    )
    assert response.status == 404


async def test_missing_customer_tenant_id_is_422(client: Client, world: World) -> None:
    body = ticket_body("x")
    del body["customer_tenant_id"]
    response = await client.post(TICKETS, json=body, headers=world.auth("alpha_partner"))
    assert response.status == 422
    fields = [d["field"] for d in (await response.json())["details"]]
    assert fields == ["customer_tenant_id"]


def _in_an_hour() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"occurred_at": "2026-01-10T08:30:00"}, "occurred_at"),  # naive
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"reported_at": "2026-01-10T08:30:00+00:00"}, "reported_at"),  # server-set
        ({"state": "closed"}, "state"),  # every ticket starts open
        ({"number": "NA00000001"}, "number"),
        ({"partner_account_id": "100000000000"}, "partner_account_id"),
        ({"support_level": 0}, "support_level"),
        ({"support_level": 6}, "support_level"),
        ({"support_level": "2"}, "support_level"),
        ({"language": "english"}, "language"),
        ({"language": "en_GB"}, "language"),
        ({"language": "en-GB'; --"}, "language"),
        ({"subject": "   "}, "subject"),
        ({"customer_tenant_id": "../../etc"}, "customer_tenant_id"),
    ],
)
async def test_invalid_tickets_are_422_naming_the_field(
    client: Client, world: World, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post(
        TICKETS, json=ticket_body(world.tid("opted_in"), **overrides), headers=world.auth("op")
    )
    assert response.status == 422, await response.text()
    assert [d["field"] for d in (await response.json())["details"]] == [field]


async def test_occurred_after_reported_is_422(client: Client, world: World) -> None:
    response = await client.post(
        TICKETS,
        json=ticket_body(world.tid("opted_in"), occurred_at=_in_an_hour()),
        headers=world.auth("alpha_partner"),
    )
    assert response.status == 422
    assert (await response.json())["details"][0]["field"] == "occurred_at"
    assert await numbers_seen(client, world, "op") == set()


async def test_language_is_stored_in_canonical_case(client: Client, world: World) -> None:
    ticket = await raise_ticket(client, world, "op", "opted_in", language="ZH-hant-tw")
    assert ticket["language"] == "zh-Hant-TW"


# --- visibility -----------------------------------------------------------------------------


async def test_each_caller_sees_only_its_tickets(client: Client, world: World) -> None:
    by_alpha = (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"]
    by_beta = (await raise_ticket(client, world, "beta_partner", "other_reseller"))["number"]
    reported = (await raise_ticket(client, world, "opted_in_admin", "opted_in"))["number"]
    by_operator = (await raise_ticket(client, world, "op", "opted_in"))["number"]
    by_beta_customer = (
        await raise_ticket(client, world, "other_reseller_admin", "other_reseller")
    )["number"]

    # A partner sees its own account's tickets: raised by it or reported to it; not the
    # operator's ticket for the same customer.
    assert await numbers_seen(client, world, "alpha_partner") == {by_alpha, reported}
    assert await numbers_seen(client, world, "beta_partner") == {by_beta, by_beta_customer}
    # The customer sees every ticket on its tenant, whoever raised it.
    assert await numbers_seen(client, world, "opted_in_admin") == {
        by_alpha,
        reported,
        by_operator,
    }
    assert await numbers_seen(client, world, "other_reseller_admin") == {by_beta, by_beta_customer}
    assert await numbers_seen(client, world, "opted_out_admin") == set()
    assert await numbers_seen(client, world, "op") == {
        by_alpha,
        by_beta,
        reported,
        by_operator,
        by_beta_customer,
    }

    for caller, foreign in (
        ("beta_partner", by_alpha),
        ("alpha_partner", by_beta),
        ("alpha_partner", by_operator),
        ("opted_in_admin", by_beta),
        ("opted_out_admin", by_alpha),
        ("opted_in_user", by_alpha),
        ("gamma_partner", by_alpha),
    ):
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"state": "closed"}),
            ("POST", "/comments", {"body": "hello"}),
            ("POST", "/escalate", None),
        ):
            response = await client.request(
                method, f"{TICKETS}/{foreign}{suffix}", json=body, headers=world.auth(caller)
            )
            assert response.status == 404, (caller, method, suffix)
            assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "number",
    [
        "na12345678",
        "NA-1",
        "NA123456789",
        "NA1234567",
        "NA1234567X",
        "NA" + "".join(chr(0xFF10 + int(d)) for d in "12345678"),  # full-width digits
        "NA12345678 ",
        "NA12345678\n",
        "NA12345678' OR '1'='1",
        "NA%",
        "../tickets",
        "..%2F..%2Fetc%2Fpasswd",
        "NA12345678%00",
    ],
)
async def test_malformed_numbers_are_404(client: Client, world: World, number: str) -> None:
    await raise_ticket(client, world, "op", "opted_in")
    response = await client.get(f"{TICKETS}/{quote(number, safe='%')}", headers=world.auth("op"))
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"  # answered by the handler


async def test_a_real_number_in_lower_case_is_404(client: Client, world: World) -> None:
    number = (await raise_ticket(client, world, "op", "opted_in"))["number"]
    response = await client.get(f"{TICKETS}/{number.lower()}", headers=world.auth("op"))
    assert response.status == 404


async def test_list_is_keyset_paginated_newest_first_and_filtered(
    client: Client, world: World
) -> None:
    raised = [
        (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"] for _ in range(3)
    ]
    other = (await raise_ticket(client, world, "alpha_partner", "opted_out"))["number"]
    customer = world.tid("opted_in")

    first = await client.get(
        f"{TICKETS}?customer_tenant_id={customer}&limit=2", headers=world.auth("alpha_partner")
    )
    page = await first.json()
    assert [item["number"] for item in page["items"]] == raised[:0:-1]
    assert page["next"] is not None
    second = await client.get(
        f"{TICKETS}?customer_tenant_id={customer}&limit=2&after={page['next']}",
        headers=world.auth("alpha_partner"),
    )
    page = await second.json()
    assert [item["number"] for item in page["items"]] == raised[:1]
    assert page["next"] is None

    oldest = await client.get(f"{TICKETS}?order=oldest", headers=world.auth("alpha_partner"))
    assert [item["number"] for item in (await oldest.json())["items"]] == [*raised, other]

    closed = await client.patch(
        f"{TICKETS}/{other}", json={"state": "closed"}, headers=world.auth("alpha_partner")
    )
    assert closed.status == 200
    assert await numbers_seen(client, world, "alpha_partner", "?state=closed") == {other}
    assert await numbers_seen(client, world, "alpha_partner", "?state=open") == set(raised)
    assert await numbers_seen(client, world, "op", "?addressed_to=operator") == set()


@pytest.mark.parametrize(
    "query", ["?state=solved", "?state=OPEN", "?customer_tenant_id=1%27--", "?sort=number"]
)
async def test_bad_list_filters_are_422(client: Client, world: World, query: str) -> None:
    response = await client.get(f"{TICKETS}{query}", headers=world.auth("op"))
    assert response.status == 422


# --- changing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "solved"}, "state"),
        ({"state": None}, "state"),
        ({"occurred_at": "2026-01-10T08:30:00"}, "occurred_at"),
        ({"reported_at": "2026-01-10T08:30:00+00:00"}, "reported_at"),
        ({"number": "NA00000001"}, "number"),
        ({"partner_account_id": "100000000000"}, "partner_account_id"),
        ({"customer_tenant_id": "100000000000"}, "customer_tenant_id"),
        ({"addressed_to": "operator"}, "addressed_to"),
        ({"submitter_id": 1}, "submitter_id"),
    ],
)
async def test_invalid_changes_are_422(
    client: Client, world: World, body: dict[str, Any], field: str
) -> None:
    number = (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"]
    response = await client.patch(
        f"{TICKETS}/{number}", json=body, headers=world.auth("alpha_partner")
    )
    assert response.status == 422, await response.text()
    assert [d["field"] for d in (await response.json())["details"]] == [field]


async def test_occurred_at_cannot_move_past_reported_at(client: Client, world: World) -> None:
    number = (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"]
    response = await client.patch(
        f"{TICKETS}/{number}", json={"occurred_at": _in_an_hour()}, headers=world.auth("op")
    )
    assert response.status == 422
    assert (await response.json())["details"][0]["field"] == "occurred_at"


async def test_customer_admins_comment_publicly_but_do_not_change_tickets(
    client: Client, world: World
) -> None:
    number = (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"]
    headers = world.auth("opted_in_admin")

    changed = await client.patch(f"{TICKETS}/{number}", json={"state": "closed"}, headers=headers)
    assert changed.status == 403
    escalated = await client.post(f"{TICKETS}/{number}/escalate", headers=headers)
    assert escalated.status == 403
    internal = await client.post(
        f"{TICKETS}/{number}/comments", json={"body": "psst", "public": False}, headers=headers
    )
    assert internal.status == 403
    public = await client.post(
        f"{TICKETS}/{number}/comments", json={"body": "Still broken."}, headers=headers
    )
    assert public.status == 201
    assert (await public.json())["public"] is True


@pytest.mark.parametrize("customer", ["unlinked", "gamma_customer", "eu_no_dpa"])
async def test_a_customer_without_a_usable_reseller_reports_to_the_operator(
    client: Client, world: World, customer: str
) -> None:
    ticket = await raise_ticket(client, world, f"{customer}_admin", customer)
    assert ticket["addressed_to"] == "operator"
    assert ticket["partner_account_id"] is None
    assert ticket["number"] in await numbers_seen(client, world, "op", "?addressed_to=operator")


async def test_partner_writes_need_the_link_now(client: Client, world: World) -> None:
    customer = world.tid("opted_in")
    number = (await raise_ticket(client, world, "alpha_partner", "opted_in"))["number"]
    moved = await client.put(
        f"/api/v1/tenants/{customer}/partner-ids",
        json={"reseller_partner_id": "BETA000001"},
        headers=world.auth("op"),
    )
    assert moved.status == 200, await moved.text()

    # Its own account's record stays readable; acting for the customer does not.
    assert number in await numbers_seen(client, world, "alpha_partner")
    headers = world.auth("alpha_partner")
    comment = await client.post(
        f"{TICKETS}/{number}/comments", json={"body": "hi"}, headers=headers
    )
    assert comment.status == 403
    change = await client.patch(f"{TICKETS}/{number}", json={"state": "closed"}, headers=headers)
    assert change.status == 403
    # And beta, now linked, still does not see alpha's ticket.
    assert number not in await numbers_seen(client, world, "beta_partner")


# --- the whole way: customer → partner → operator -------------------------------------------


async def test_customer_reports_partner_works_and_escalates_operator_resolves(
    client: Client, world: World
) -> None:
    customer = world.tid("opted_out")  # no opt-in: the partner gets the report anyway
    customer_admin, partner, operator = (
        world.users["opted_out_admin"],
        world.users["alpha_partner"],
        world.users["op"],
    )

    # 1. The customer reports an issue; it goes to its reseller.
    reported = await client.post(
        TICKETS,
        json=ticket_body(customer, requester=None, company=None),
        headers=world.auth("opted_out_admin"),
    )
    assert reported.status == 201, await reported.text()
    ticket = await reported.json()
    number = ticket["number"]
    assert ticket["partner_account_id"] == world.tid("alpha")
    assert ticket["addressed_to"] == "reseller"
    assert ticket["submitter_id"] == customer_admin.id
    assert ticket["requester"] == "Opted_Out_Admin"  # the caller by default
    assert number in await numbers_seen(client, world, "alpha_partner")
    assert number not in await numbers_seen(client, world, "beta_partner")

    # 2. The partner answers publicly, notes something internally and works on it.
    url = f"{TICKETS}/{number}"
    for body in (
        {"body": "We are looking into it."},
        {"body": "Firmware V1R7 suspected; ask the operator.", "public": False},
    ):
        commented = await client.post(
            f"{url}/comments", json=body, headers=world.auth("alpha_partner")
        )
        assert commented.status == 201, await commented.text()
    working = await client.patch(
        url, json={"state": "in_progress", "support_level": 1}, headers=world.auth("alpha_partner")
    )
    assert working.status == 200, await working.text()

    # The customer never sees the internal comment; the partner and operator do.
    seen = await (await client.get(url, headers=world.auth("opted_out_admin"))).json()
    assert [c["body"] for c in seen["comments"]] == ["We are looking into it."]
    for caller in ("alpha_partner", "op"):
        seen = await (await client.get(url, headers=world.auth(caller))).json()
        assert [c["public"] for c in seen["comments"]] == [True, False]

    # 3. The partner escalates; from now on the operator works it.
    escalated = await client.post(f"{url}/escalate", headers=world.auth("alpha_partner"))
    assert escalated.status == 200, await escalated.text()
    assert (await escalated.json())["addressed_to"] == "operator"
    again = await client.post(f"{url}/escalate", headers=world.auth("op"))
    assert again.status == 409
    late = await client.patch(url, json={"state": "pending"}, headers=world.auth("alpha_partner"))
    assert late.status == 403
    followup = await client.post(
        f"{url}/comments", json={"body": "Customer confirms."}, headers=world.auth("alpha_partner")
    )
    assert followup.status == 201
    assert number in await numbers_seen(client, world, "op", "?addressed_to=operator")

    # 4. The operator resolves, then closes.
    for state in ("resolved", "closed"):
        done = await client.patch(url, json={"state": state}, headers=world.auth("op"))
        assert done.status == 200, await done.text()
    final = await done.json()
    assert final["state"] == "closed"
    assert final["closed_at"] is not None

    # The history shows every field change, by whom.
    history = [
        (h["field"], h["old_value"], h["new_value"], h["actor_id"]) for h in final["history"]
    ]
    assert history == [
        ("state", "open", "in_progress", partner.id),
        ("support_level", "2", "1", partner.id),
        ("addressed_to", "reseller", "operator", partner.id),
        ("state", "in_progress", "resolved", operator.id),
        ("state", "resolved", "closed", operator.id),
    ]
    customer_view = await (await client.get(url, headers=world.auth("opted_out_admin"))).json()
    assert customer_view["history"] == final["history"]

    # Every write is in the customer's audit log, with how it was done, and never carries
    # comment text (the customer reads this log).
    log = await client.get(
        f"/api/v1/tenants/{customer}/audit?limit=200", headers=world.auth("opted_out_admin")
    )
    assert log.status == 200, await log.text()
    entries = [e for e in (await log.json())["items"] if e["object_type"] == "ticket"]
    assert all(e["object_id"] == number and e["target_tenant_id"] == customer for e in entries)
    assert [(e["action"], e["via"], e["actor_user_id"]) for e in reversed(entries)] == [
        ("ticket.create", "direct", customer_admin.id),
        ("ticket.comment", "partner", partner.id),
        ("ticket.comment", "partner", partner.id),
        ("ticket.update", "partner", partner.id),
        ("ticket.escalate", "partner", partner.id),
        ("ticket.comment", "partner", partner.id),
        ("ticket.update", "operator", operator.id),
        ("ticket.update", "operator", operator.id),
    ]
    assert "Firmware" not in str(entries)
    assert entries[-1]["actor_tenant_id"] == customer
    assert entries[-2]["actor_tenant_id"] == world.tid("alpha")
    assert entries[0]["changes"] == {"state": {"old": "resolved", "new": "closed"}}


async def test_partner_raised_ticket_is_audited_via_partner(client: Client, world: World) -> None:
    number = (await raise_ticket(client, world, "alpha_partner", "opted_out"))["number"]
    log = await client.get("/api/v1/audit", headers=world.auth("alpha_partner"))
    entry = (await log.json())["items"][0]
    assert (entry["action"], entry["object_id"], entry["via"]) == (
        "ticket.create",
        number,
        "partner",
    )
    assert entry["target_tenant_id"] == world.tid("opted_out")
    assert entry["actor_tenant_id"] == world.tid("alpha")
