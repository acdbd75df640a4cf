"""The audit log is append-only through the API and in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.api import api
from dls.audit import AuditEntry
from dls.services import Services
from tests.api.calls import call
from tests.api.world import World

pytestmark = pytest.mark.db


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
