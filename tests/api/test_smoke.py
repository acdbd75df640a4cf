"""A first pass over the admin API: the walk-through of the README, in process."""

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.world import World

pytestmark = pytest.mark.db


async def test_partner_manages_an_opted_in_customer(
    client: TestClient[Any, Any], world: World
) -> None:
    customer = world.tid("opted_in")
    picker = await client.get("/api/v1/partner/tenants", headers=world.auth("alpha_partner"))
    assert picker.status == 200, await picker.text()
    entries = {e["tenant_id"]: e for e in (await picker.json())["items"]}
    assert entries[customer]["manageable"] is True
    assert entries[world.tid("opted_out")]["reasons"] == ["opted_in"]

    changed = await client.patch(
        f"/api/v1/tenants/{customer}",
        json={"self_setup_allowed": False},
        headers=world.auth("alpha_partner"),
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["self_setup_allowed"] is False

    for reader in ("opted_in_admin", "alpha_partner"):
        path = f"/api/v1/tenants/{customer}/audit" if reader.endswith("admin") else "/api/v1/audit"
        log = await client.get(path, headers=world.auth(reader))
        assert log.status == 200, await log.text()
        entry = (await log.json())["items"][0]
        assert entry["via"] == "partner"
        assert entry["actor_user_id"] == world.users["alpha_partner"].id
        assert entry["target_tenant_id"] == customer
        assert entry["changes"] == {"self_setup_allowed": {"old": True, "new": False}}


async def test_unknown_field_is_rejected_naming_it(
    client: TestClient[Any, Any], world: World
) -> None:
    response = await client.patch(
        f"/api/v1/tenants/{world.tid('opted_in')}",
        json={"partner_access": True},
        headers=world.auth("opted_in_admin"),
    )
    assert response.status == 422
    body = await response.json()
    assert body["details"][0] == {
        "field": "partner_access",
        "message": "unknown field",
        "type": "extra_forbidden",
    }


async def test_openapi_covers_every_route(client: TestClient[Any, Any]) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1/")
    }
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert routes == documented
