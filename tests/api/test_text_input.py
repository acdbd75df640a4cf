"""Text neither database can hold is refused alike on both, naming where it was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.world import World

pytestmark = pytest.mark.db

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/tenants/{tenant}/groups", {"name": "Sales\x00"}, "name"),
        ("PATCH", "/api/v1/tenants/{tenant}", {"name": "Acme\x00 GmbH"}, "name"),
        ("GET", "/api/v1/tenants/{tenant}/devices?q=0015%00", None, "q"),
        ("POST", "/api/v1/auth/login", {"username": "admin\x00", "password": "x" * 12}, "username"),
    ],
)
async def test_nul_in_a_body_or_query_is_a_422_on_both_databases(
    client: TestClient[Any, Any],
    world: World,
    method: str,
    path: str,
    body: dict[str, str] | None,
    field: str,
) -> None:
    """PostgreSQL's text takes no NUL: its driver refused the statement and the admin got
    a 500, where SQLite stored the NUL."""
    tenant = world.tid("opted_in")
    response = await client.request(
        method,
        path.format(tenant=tenant),
        data=json.dumps(body) if body is not None else None,
        headers={**world.auth("opted_in_admin"), **(JSON if body is not None else {})},
    )
    assert response.status == 422, await response.text()
    assert (await response.json())["details"] == [
        {"field": field, "message": "NUL characters are not allowed", "type": "value_error"}
    ]
    admin = world.auth("opted_in_admin")
    groups = await client.get(f"/api/v1/tenants/{tenant}/groups", headers=admin)
    assert await groups.json() == []  # nothing written
    customer = await (await client.get(f"/api/v1/tenants/{tenant}", headers=admin)).json()
    assert "\x00" not in customer["name"]


async def test_nul_in_a_path_names_nothing(client: TestClient[Any, Any], world: World) -> None:
    response = await client.get("/api/v1/tenants/%00/devices", headers=world.auth("opted_in_admin"))
    assert response.status == 404, await response.text()
