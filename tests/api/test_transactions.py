"""What an admin request holds in the database while it runs: a slow upload holds nothing,
and a read does not take SQLite's one write lock, so neither stalls the other writers
(the device path's bookkeeping, other admins)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.api.routing import Api, Call
from dls.auth import passwords
from dls.auth.models import AccessToken
from dls.db.engine import is_sqlite
from dls.db.types import utcnow
from dls.devices import client_certificates
from dls.devices.models import Device, Scope, SettingsDocument
from dls.middleware import LISTENER, request_context
from dls.services import SERVICES, Services
from dls.tenancy.models import Tenant
from tests.api.world import World

pytestmark = pytest.mark.db

Client = TestClient[Any, Any]
# Far below SQLite's 30 s busy timeout: a request that waits for the write lock fails here.
GUARD_S = 5.0


async def _register(client: Client, world: World, mac: str) -> int:
    response = await client.post(
        f"/api/v1/tenants/{world.tid('opted_in')}/devices",
        json={"mac": mac, "vendor": "yealink", "model": "T46U"},
        headers=world.auth("opted_in_admin"),
    )
    return response.status


async def _device(client: Client, world: World, mac: str) -> Any:
    listed = await client.get(
        f"/api/v1/tenants/{world.tid('opted_in')}/devices?q={mac}",
        headers=world.auth("opted_in_admin"),
    )
    (device,) = (await listed.json())["items"]
    return device


def _write_lock_free(engine: AsyncEngine) -> bool:
    """Whether another connection could take SQLite's write lock right now."""
    probe = sqlite3.connect(engine.url.database, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


async def test_a_slow_upload_does_not_hold_other_writers_back(client: Client, world: World) -> None:
    body = json.dumps({"csv": "mac,model\n001565000001,T46U\n"}).encode()
    path = f"/api/v1/tenants/{world.tid('opted_in')}/devices/import"
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: dls\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Authorization: {world.auth('opted_in_admin')['Authorization']}\r\n\r\n"
    )
    writer.write(head.encode() + body[:10])  # and the rest later, as a slow link would
    await writer.drain()
    await asyncio.sleep(0.2)  # the import's handler is waiting for its body

    assert await asyncio.wait_for(_register(client, world, "001565000002"), GUARD_S) == 201

    writer.write(body[10:])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), GUARD_S)
    writer.close()
    assert b" 200 " in status_line, status_line


async def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(
    client: Client, world: World
) -> None:
    path = f"/api/v1/tenants/{world.tid('opted_in')}/devices/import"
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: dls\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n{".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), GUARD_S)
    writer.close()
    assert b" 401 " in status_line, status_line


async def test_reads_do_not_wait_for_the_write_lock(
    client: Client, world: World, engine: AsyncEngine
) -> None:
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL has no database-wide write lock")
    holder = sqlite3.connect(engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        response = await asyncio.wait_for(
            client.get(
                f"/api/v1/tenants/{world.tid('opted_in')}/devices",
                headers=world.auth("opted_in_admin"),
            ),
            GUARD_S,
        )
        assert response.status == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_a_read_that_would_write_fails_instead_of_writing(
    services: Services, world: World, aiohttp_client: Any
) -> None:
    """GETs run in read-only transactions: one that wrote (taking SQLite's write lock
    mid-transaction, which fails at once when another writer got there first) fails in
    every run instead of now and then under load. A GET that must write says so."""
    table = Api("/api/v1")
    rename = update(Tenant).where(Tenant.tenant_id == world.tid("opted_in"))

    @table.route("GET", "/sneaky", summary="writes", tag="test", response=None)
    async def sneaky(call: Call) -> None:
        await call.session.execute(rename.values(name="renamed by a GET"))

    @table.route("GET", "/declared", summary="writes", tag="test", response=None, writes=True)
    async def declared(call: Call) -> None:
        await call.session.execute(rename.values(name="renamed, as declared"))

    app = web.Application(middlewares=[request_context])
    app[SERVICES], app[LISTENER] = services, "admin"
    table.install(app)
    client = await aiohttp_client(app)
    headers = world.auth("opted_in_admin")

    assert (await client.get("/api/v1/sneaky", headers=headers)).status == 500
    assert await _name(services, world) != "renamed by a GET"
    # One request at a time takes the same pooled connection: it went back writable.
    assert (await client.get("/api/v1/declared", headers=headers)).status == 204
    assert await _name(services, world) == "renamed, as declared"


async def test_a_handler_that_streams_its_body_writes_in_a_transaction_of_its_own(
    services: Services, world: World, aiohttp_client: Any
) -> None:
    """An upload's request transaction ends before its handler runs: the handler that
    reaches for it fails at once (rather than opening one left open), and one that writes
    in ``call.writing()`` writes."""
    table = Api("/api/v1")
    rename = update(Tenant).where(Tenant.tenant_id == world.tid("opted_in"))

    @table.route("POST", "/stray", summary="t", tag="test", writes=False, streams_body=True)
    async def stray(call: Call) -> None:
        await call.request.read()
        await call.session.execute(rename.values(name="renamed outside"))

    @table.route("POST", "/upload", summary="t", tag="test", writes=False, streams_body=True)
    async def upload(call: Call) -> None:
        name = (await call.request.read()).decode()
        async with call.writing() as writing:
            await writing.session.execute(rename.values(name=name))

    with pytest.raises(ValueError, match="reads it itself"):
        table.route("POST", "/x", summary="t", tag="test", streams_body=True)

    app = web.Application(middlewares=[request_context])
    app[SERVICES], app[LISTENER] = services, "admin"
    table.install(app)
    client = await aiohttp_client(app)
    headers = world.auth("opted_in_admin")

    assert (await client.post("/api/v1/stray", data=b"-", headers=headers)).status == 500
    assert await _name(services, world) != "renamed outside"
    answer = await client.post("/api/v1/upload", data=b"uploaded", headers=headers)
    assert answer.status == 204
    assert await _name(services, world) == "uploaded"
    assert (await client.post("/api/v1/upload", data=b"anonymous")).status == 401


async def test_a_change_that_lost_a_race_is_a_409_and_writes_nothing(
    services: Services, world: World, aiohttp_client: Any
) -> None:
    """PostgreSQL: two admin transactions read the same settings revision and both write
    (on SQLite the write lock, taken first, orders them). The later one fails on the
    revision's version counter and is answered 409, not 500; the earlier one stands."""
    if is_sqlite(services.engine):
        pytest.skip("PostgreSQL only: SQLite's writers take the write lock before they read")
    table = Api("/api/v1")
    tenant = world.tid("opted_in")

    async def bump(session: Any, language: str) -> None:
        document = await session.scalar(
            select(SettingsDocument).where(
                SettingsDocument.scope == Scope.TENANT, SettingsDocument.scope_key == tenant
            )
        )
        document.data = {"language": language}
        document.revision += 1

    async with services.sessions() as session, session.begin():
        session.add(SettingsDocument(scope=Scope.TENANT, scope_key=tenant, data={}, revision=1))

    @table.route("POST", "/race", summary="t", tag="test", response=None)
    async def race(call: Call) -> None:
        await bump(call.session, "late")  # read revision 1, changed in this transaction
        async with services.sessions() as other, other.begin():
            await bump(other, "early")  # another request commits revision 2 meanwhile

    app = web.Application(middlewares=[request_context])
    app[SERVICES], app[LISTENER] = services, "admin"
    table.install(app)
    client = await aiohttp_client(app)
    answer = await client.post("/api/v1/race", headers=world.auth("opted_in_admin"))
    assert answer.status == 409, await answer.text()
    assert (await answer.json())["error"] == "conflict"
    async with services.sessions() as session:
        stored = await session.scalar(
            select(SettingsDocument).where(SettingsDocument.scope_key == tenant)
        )
    assert (stored.data, stored.revision) == ({"language": "early"}, 2)


async def _name(services: Services, world: World) -> str:
    async with services.sessions() as session:
        tenant = await session.get(Tenant, world.tid("opted_in"))
        assert tenant is not None
        return tenant.name


async def test_failed_logins_are_refused_and_counted_at_once(client: Client, world: World) -> None:
    """A wrong password is a 401 within the guard, each one counted, until the account's
    limit answers 429: the failure is recorded while the login's own transaction (which
    the error rolls back) is still open."""
    statuses = []
    for _ in range(6):
        response = await asyncio.wait_for(
            client.post(
                "/api/v1/auth/login", json={"username": "opted_in_admin", "password": "wrong"}
            ),
            GUARD_S,
        )
        statuses.append(response.status)
    assert statuses == [401] * 5 + [429]


async def test_a_client_certificate_key_is_made_while_no_write_lock_is_held(
    client: Client, world: World, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RSA-2048 takes tens of milliseconds, for which the device path's writers would
    wait: the key pair is made before the issuing transaction takes the lock."""
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL has no database-wide write lock")
    assert await _register(client, world, "001565000004") == 201
    real = client_certificates.issue_device_certificate
    lock_was_free: list[bool] = []

    def made_while_probing(pki: Any, mac: str) -> Any:
        lock_was_free.append(_write_lock_free(engine))
        return real(pki, mac)

    monkeypatch.setattr(client_certificates, "issue_device_certificate", made_while_probing)
    device = await _device(client, world, "001565000004")
    response = await client.post(
        f"/api/v1/tenants/{world.tid('opted_in')}/devices/{device['id']}/client-certificate",
        headers=world.auth("opted_in_admin"),
    )
    assert response.status == 201, await response.text()
    assert lock_was_free == [True]
    shown = await client.get(
        f"/api/v1/tenants/{world.tid('opted_in')}/devices/{device['id']}",
        headers=world.auth("opted_in_admin"),
    )
    assert (await shown.json())["client_certificate_sha256"] == (await response.json())["sha256"]


async def test_what_changed_during_the_slow_part_is_seen_before_writing(
    client: Client, world: World, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's token is revoked while its client certificate's key is being made:
    the write that follows authenticates again, answers 401 and records nothing."""
    assert await _register(client, world, "001565000005") == 201
    device = await _device(client, world, "001565000005")
    loop = asyncio.get_running_loop()
    real = client_certificates.issue_device_certificate

    async def revoke() -> None:
        async with services.sessions() as session, session.begin():
            await session.execute(
                update(AccessToken)
                .where(AccessToken.user_id == world.users["opted_in_admin"].id)
                .values(revoked_at=utcnow())
            )

    def made_while_revoked(pki: Any, mac: str) -> Any:
        asyncio.run_coroutine_threadsafe(revoke(), loop).result(GUARD_S)
        return real(pki, mac)

    monkeypatch.setattr(client_certificates, "issue_device_certificate", made_while_revoked)
    response = await client.post(
        f"/api/v1/tenants/{world.tid('opted_in')}/devices/{device['id']}/client-certificate",
        headers=world.auth("opted_in_admin"),
    )
    assert response.status == 401
    async with services.sessions() as session:
        stored = await session.get(Device, device["id"])
        assert stored is not None and stored.client_certificate_sha256 is None


async def test_a_users_password_is_hashed_while_no_write_lock_is_held(
    client: Client, world: World, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL has no database-wide write lock")
    lock_was_free: list[bool] = []
    real = passwords.hash_password

    def hashed_while_probing(password: str) -> str:
        lock_was_free.append(_write_lock_free(engine))
        return real(password)

    monkeypatch.setattr(passwords, "hash_password", hashed_while_probing)
    tenant = world.tid("opted_in")
    created = await client.post(
        f"/api/v1/tenants/{tenant}/users",
        json={"username": "hashed", "role": "user", "password": "correct horse battery"},
        headers=world.auth("opted_in_admin"),
    )
    assert created.status == 201, await created.text()
    changed = await client.patch(
        f"/api/v1/tenants/{tenant}/users/{(await created.json())['id']}",
        json={"password": "another staple battery"},
        headers=world.auth("opted_in_admin"),
    )
    assert changed.status == 200, await changed.text()
    assert lock_was_free == [True, True]
    login = await client.post(
        "/api/v1/auth/login", json={"username": "hashed", "password": "another staple battery"}
    )
    assert login.status == 200
