"""The firmware admin API in process: uploads, targets, rollout controls and views."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text

from dls.api import API_PREFIX
from dls.app import build_admin_app
from dls.audit import AuditEntry
from dls.auth.models import TokenKind
from dls.auth.tokens import issue_token
from dls.db.engine import is_sqlite
from dls.db.types import utcnow
from dls.provisioning.ledger import Fetch, Ledger
from dls.services import Services
from dls.tenancy import service
from dls.tenancy.models import Role, TenantKind, User
from tests.firmware.conftest import Fleet

pytestmark = pytest.mark.db


@pytest.fixture
def firmware_settings() -> dict[str, Any]:
    return {"firmware_max_image_size": 4096}


@pytest.fixture
async def operator(services: Services) -> str:
    async with services.sessions() as session, session.begin():
        tenant = await service.create_tenant(
            session, kind=TenantKind.OPERATOR, name="Operator", country="DE", eu=True
        )
        user = User(tenant_id=tenant.tenant_id, username="op", role=Role.OPERATOR)
        session.add(user)
        await session.flush()
        token, _ = issue_token(session, user, TokenKind.API, name="test")
        return token


@pytest.fixture
async def api(services: Services, operator: str) -> AsyncIterator[Any]:
    async with TestClient(TestServer(build_admin_app(services))) as client:

        async def call(method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
            headers = {"Authorization": f"Bearer {operator}", **kwargs.pop("headers", {})}
            response = await client.request(method, API_PREFIX + path, headers=headers, **kwargs)
            body = await response.json() if response.status != 204 else None
            assert response.status == expect, (method, path, response.status, body)
            return body

        yield call


async def test_uploads_are_bounded_and_raw(api: Any) -> None:
    query = {"vendor": "yealink", "version": "108.99.0.1", "models": "T46U,T43U"}
    refused = await api("POST", "/firmware/images", 413, params=query, data=b"x" * 4097)
    assert refused["error"] == "too_large"
    # Chunked, so the limit is found while streaming rather than from Content-Length.

    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 1000

    refused = await api("POST", "/firmware/images", 413, params=query, data=body())
    assert refused["error"] == "too_large"
    form = {"Content-Type": "multipart/form-data; boundary=x"}
    await api("POST", "/firmware/images", 415, params=query, data=b"--x--", headers=form)
    wrong_model = {**query, "models": "T99"}
    assert (await api("POST", "/firmware/images", 422, params=wrong_model, data=b"1"))[
        "error"
    ] == "invalid"
    image = await api("POST", "/firmware/images", 201, params=query, data=b"z" * 100)
    assert image["models"] == ["T46U", "T43U"] and image["size"] == 100
    listed = await api("GET", "/firmware/images?vendor=yealink")
    assert [item["id"] for item in listed["items"]] == [image["id"]]


async def _transactions_held(services: Services) -> int:
    """Transactions other connections hold open. On SQLite, whether a reader's snapshot
    keeps a checkpoint from emptying the WAL (what an open transaction costs there)."""
    engine = services.engine
    if is_sqlite(engine):
        connection = sqlite3.connect(str(engine.url.database), timeout=0)
        try:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.close()
        return int(busy)
    async with engine.connect() as connection:
        held = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
    return int(held or 0)


async def test_an_image_upload_holds_no_write_lock_while_it_arrives(
    services: Services, operator: str
) -> None:
    """Images are large and links slow: other writers (admins, the device path) go on
    while one arrives, and no transaction stays open meanwhile; the image is recorded,
    and audited, once all of it is in."""
    query = "vendor=yealink&version=108.99.0.2&models=T46U"
    image = b"w" * 1000
    async with TestClient(TestServer(build_admin_app(services))) as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            f"POST {API_PREFIX}/firmware/images?{query} HTTP/1.1\r\nHost: dls\r\n"
            f"Authorization: Bearer {operator}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(image)}\r\n\r\n".encode()
            + image[:100]
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # streaming: the first chunk is on disk, the rest to come
        other = client.post(
            API_PREFIX + "/tenants",
            json={"kind": "customer", "name": "Meanwhile", "country": "DE"},
            headers={"Authorization": f"Bearer {operator}"},
        )
        created = await asyncio.wait_for(other, 5)  # far below SQLite's 30 s busy timeout
        assert created.status == 201, await created.text()
        assert await _transactions_held(services) == 0
        writer.write(image[100:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert b" 201 " in status_line, status_line
    async with services.sessions() as session:
        actions = set(await session.scalars(select(AuditEntry.action)))
    assert "firmware.image.import" in actions


async def test_targets_and_a_tenant_rollout_through_the_api(
    api: Any, services: Services, fleet: Fleet
) -> None:
    await fleet.image(version="108.99.0.1")
    tenant = await fleet.tenant()
    other = await fleet.tenant("Other")
    group = await fleet.group(tenant)
    foreign_group = await fleet.group(other)
    devices = [await fleet.device(tenant, group_id=group) for _ in range(3)]
    target = {"vendor": "yealink", "model": "t46u", "version": "108.99.0.1"}
    base = f"/tenants/{tenant.tenant_id}/firmware"
    await api("PUT", base + "/targets", 404, json={**target, "group_id": foreign_group})
    for no_row in (0, -1, 2**31, 10**30):  # no group has it; past the column: not a 500
        await api("PUT", base + "/targets", 404, json={**target, "group_id": no_row})
    missing = await api("PUT", "/firmware/targets", 422, json={**target, "version": "1.2.3"})
    assert "no image" in missing["message"]
    answer = await api("PUT", base + "/targets", json={**target, "group_id": group})
    assert (answer["scope"], answer["group_id"], answer["model"]) == ("group", group, "T46U")
    assert [t["scope"] for t in await api("GET", base + "/targets")] == ["group"]
    cleared = await api(
        "PUT", base + "/targets", json={**target, "version": None, "group_id": group}
    )
    assert (cleared["version"], await api("GET", base + "/targets")) == (None, [])

    rollout = await api(
        "POST",
        base + "/rollouts",
        201,
        json={
            "name": "Group",
            "targets": [target],
            "waves": [{"devices": [devices[0].id]}, {"percent": 100}],
            "group_id": group,
            "window": {"start": "00:00", "end": "23:59", "time_zone": "Europe/Berlin"},
        },
    )
    assert rollout["window"]["weekdays"] == list(range(7))
    assert rollout["devices"]["offered"] + rollout["devices"]["pending"] == 3
    path = f"{base}/rollouts/{rollout['id']}"
    assert await api("GET", f"/tenants/{other.tenant_id}/firmware/rollouts/{rollout['id']}", 404)
    page = await api("GET", path + "/devices?limit=2")
    assert len(page["items"]) == 2 and page["next"]
    rest = await api("GET", path + f"/devices?limit=2&after={page['next']}")
    assert len(rest["items"]) == 1
    assert (await api("POST", path + "/pause"))["status"] == "paused"
    assert (await api("POST", path + "/resume", json={}))["status"] == "running"
    assert (await api("POST", path + "/abort"))["status"] == "aborted"
    assert (await api("POST", path + "/resume", 409, json={}))["error"] == "conflict"
    summaries = await api("GET", base + "/rollouts?status=aborted")
    assert [item["id"] for item in summaries["items"]] == [rollout["id"]]
    effective = await api(
        "GET", f"/tenants/{tenant.tenant_id}/devices/{devices[0].id}/effective-config"
    )
    assert effective["firmware"]["version"] is None  # aborted, and no target is left
    assert effective["firmware"]["reported_version"] == "108.86.0.90"


async def test_the_ledger_hands_reported_versions_to_its_observers(services: Services) -> None:
    seen: list[list[Fetch]] = []

    async def broken(fetches: Any) -> None:
        raise RuntimeError("an observer's own failure")

    async def observer(fetches: Any) -> None:
        seen.append(list(fetches))

    ledger = Ledger(services.sessions)
    ledger.observers += [broken, observer]
    await ledger.flush()
    assert seen == []  # nothing flushed, nobody called
    async with services.sessions() as session, session.begin():
        tenant = await service.create_tenant(
            session, kind=TenantKind.CUSTOMER, name="Ledger", country="DE", eu=False
        )
    device = await Fleet(services).device(tenant)
    fetch = Fetch(device.id, "x.cfg", "h", "r", utcnow(), None, None, "108.87.0.1")
    ledger.fetched(fetch)
    await ledger.flush()
    assert seen == [[fetch]]


class TestAStalledUpload:
    @pytest.fixture
    def firmware_settings(self) -> dict[str, Any]:
        return {"firmware_max_image_size": 4096, "body_timeout": 0.5}

    async def test_ends_with_a_408_and_leaves_nothing_stored(
        self, services: Services, operator: str
    ) -> None:
        """An image may take minutes, but one that stops arriving ends body_timeout after
        its last piece, and its partial file is removed."""
        query = "vendor=yealink&version=108.99.0.4&models=T46U"
        async with TestClient(TestServer(build_admin_app(services))) as client:
            reader, writer = await asyncio.open_connection(client.host, client.port)
            writer.write(
                f"POST {API_PREFIX}/firmware/images?{query} HTTP/1.1\r\nHost: dls\r\n"
                f"Authorization: Bearer {operator}\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
                + b"v" * 100
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
        assert b" 408 " in status_line, status_line
        leftovers = [p for p in services.firmware.store.root.rglob("*") if p.is_file()]
        assert leftovers == []
