"""Input the request models' types let through but no database can hold or compare: a
NUL, an id past an INTEGER column's range, a forged page cursor. Each reached the driver,
which refused the statement: a 500, on one database or both. Now a 422 naming the field
(404 for a path), alike on both, and nothing written."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.api.world import World

pytestmark = pytest.mark.db

JSON = {"Content-Type": "application/json"}


async def _as_admin(
    client: TestClient[Any, Any], world: World, method: str, path: str, body: Any
) -> ClientResponse:
    """The customer's admin sends ``body`` as JSON (none: no body)."""
    return await client.request(
        method,
        path,
        data=json.dumps(body) if body is not None else None,
        headers={**world.auth("opted_in_admin"), **(JSON if body is not None else {})},
    )


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
    response = await _as_admin(client, world, method, path.format(tenant=tenant), body)
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


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/v1/tenants/{tenant}/devices?user_id=3000000000", None, "user_id"),
        (
            "POST",
            "/api/v1/tenants/{tenant}/devices",
            {"mac": "001565aabbcc", "vendor": "yealink", "model": "T46U", "user_id": 10**20},
            "user_id",
        ),
        (
            "POST",
            "/api/v1/tenants/{tenant}/devices",
            {"mac": "001565aabbcc", "vendor": "yealink", "model": "T46U", "group_id": 2**31},
            "group_id",
        ),
    ],
)
async def test_an_id_no_integer_column_holds_is_a_422(
    client: TestClient[Any, Any],
    world: World,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    tenant = world.tid("opted_in")
    admin = world.auth("opted_in_admin")
    response = await _as_admin(client, world, method, path.format(tenant=tenant), body)
    assert response.status == 422, await response.text()
    (detail,) = (await response.json())["details"]
    assert detail["field"] == field
    devices = await client.get(f"/api/v1/tenants/{tenant}/devices", headers=admin)
    assert (await devices.json())["items"] == []


@pytest.mark.parametrize(
    "cursor",
    [
        ["a", "x"],  # text where the id column compares numbers
        ["a", 10**20],
        [10**20, 1],
        ["a\x00", 1],
        [True, 1],
        [1.5, 2],
    ],
)
@pytest.mark.parametrize("listing", ["/tenants/{tenant}/devices", "/tenants/{tenant}/audit"])
async def test_a_forged_page_cursor_is_a_422(
    client: TestClient[Any, Any], world: World, cursor: list[Any], listing: str
) -> None:
    after = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
    response = await client.get(
        "/api/v1" + listing.format(tenant=world.tid("opted_in")) + "?after=" + after,
        headers=world.auth("opted_in_admin"),
    )
    assert response.status == 422, await response.text()
    assert (await response.json())["details"] == [
        {"field": "after", "message": "not a cursor from a previous page", "type": "value_error"}
    ]


@pytest.mark.parametrize(("depth", "status"), [(900, 422), (5000, 400), (100_000, 400)])
async def test_a_body_nested_past_the_parser_is_a_400(
    client: TestClient[Any, Any], world: World, depth: int, status: int
) -> None:
    """json.loads recurses per level: past Python's recursion limit it raised
    RecursionError, which the body's parsing did not catch (a 500)."""
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    response = await client.post(
        f"/api/v1/tenants/{world.tid('opted_in')}/groups",
        data=body,
        headers={**world.auth("opted_in_admin"), **JSON},
    )
    assert response.status == status, await response.text()
    if status == 400:
        assert await response.json() == {
            "error": "bad_json",
            "message": "body is nested too deeply",
        }
