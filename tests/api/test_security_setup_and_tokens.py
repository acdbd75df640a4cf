"""User self-setup forbidden by the customer and re-enabled by its partner, a delegate
setting one user's self-setup and reading a deployment PIN, each audited (reference
§9.12); and a token refused once logged out."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dls.api import API_PREFIX, api
from tests.api.calls import call
from tests.api.world import World

pytestmark = pytest.mark.db


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
