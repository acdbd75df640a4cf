"""Point reads: the device path's own connection sees what was just committed, and gives
the same answers on both ways of reading."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import literal_column, make_url, select, text, update
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.db import asyncpg_reads
from dls.db.asyncpg_reads import NAME
from dls.db.engine import is_sqlite, session_factory
from dls.db.reads import READ_POOL_SIZE, PointReads
from dls.db.unavailable import DatabaseTimeout
from dls.devices.facts import device_facts
from dls.devices.models import Device, DeviceStatus, Scope, SettingsDocument
from dls.firmware.models import FirmwareTarget, TargetScope
from dls.tenancy.models import Tenant, TenantKind

pytestmark = pytest.mark.db

MAC = "001565abcdef"


async def _device(engine: AsyncEngine) -> int:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Tenant(tenant_id="100000000001", kind=TenantKind.CUSTOMER, name="c", country="DE")
        )
        await session.flush()
        device = Device(
            mac=MAC, vendor="yealink", model="T46U", tenant_id="100000000001", revision=3
        )
        session.add(device)
        await session.flush()
        session.add(
            SettingsDocument(
                scope=Scope.DEVICE,
                scope_key=str(device.id),
                data={"firmware": {"version": "108.86.0.90"}},
                revision=7,
            )
        )
    return device.id


async def _on_point_read_connections(engine: AsyncEngine, what: str) -> list[object]:
    """``what`` (a column or expression of pg_stat_activity) for each connection of the
    point reads."""
    statement = text(
        f"SELECT {what} FROM pg_stat_activity "  # noqa: S608 - the tests' own constants
        "WHERE datname = current_database() AND application_name = :name"
    )
    async with engine.connect() as connection:
        return list((await connection.execute(statement, {"name": NAME})).scalars())


async def test_facts_follow_every_commit(engine: AsyncEngine) -> None:
    device_id = await _device(engine)
    reads = PointReads(engine)
    try:
        facts = await device_facts(reads, MAC)
        assert facts is not None
        assert (facts.id, facts.status, facts.pinned_version) == (
            device_id,
            DeviceStatus.UNASSIGNED,
            "108.86.0.90",
        )
        assert facts.revision == "0.0.0.0.7-3"
        assert facts.legacy_mac_only is False
        assert facts.firmware_managed is False  # no target for yealink, no rollout
        assert await device_facts(reads, "001565000000") is None

        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                update(Device).where(Device.id == device_id).values(revision=4, status="retired")
            )
            await session.execute(update(Tenant).values(legacy_mac_only=True))
            session.add(
                FirmwareTarget(
                    scope=TargetScope.SYSTEM,
                    scope_key="system",
                    vendor="yealink",
                    model="T54W",  # another model: the poll still asks for the offer
                    model_key="t54w",
                    version="96.86.0.10",
                    version_key="96.86.0.10",
                )
            )
        changed = await device_facts(reads, MAC)
        assert changed is not None
        assert (
            changed.revision,
            changed.status,
            changed.legacy_mac_only,
            changed.firmware_managed,
        ) == ("0.0.0.0.7-4", DeviceStatus.RETIRED, True, True)
    finally:
        await reads.dispose()


async def test_the_fallback_path_answers_the_same(engine: AsyncEngine) -> None:
    await _device(engine)
    fast, plain = PointReads(engine), PointReads(engine)
    plain._sync = None  # as on PostgreSQL, or after a busy SQLite read
    try:
        assert await device_facts(fast, MAC) == await device_facts(plain, MAC)
        assert (fast._sync is not None) == is_sqlite(engine)
    finally:
        await fast.dispose()
        await plain.dispose()


async def test_postgresql_connections_run_without_jit(engine: AsyncEngine) -> None:
    if is_sqlite(engine):
        pytest.skip("PostgreSQL only")
    reads = PointReads(engine)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SHOW jit"))).scalar() == "off"
        (row,) = await reads.rows(select(literal_column("current_setting('jit')")), {})
        assert row[0] == "off"
    finally:
        await reads.dispose()


async def test_a_postgresql_poll_is_one_statement(engine: AsyncEngine) -> None:
    """A read gives its connection back without asyncpg's reset statements (advisory
    locks, cursors, LISTEN, RESET ALL): they were a second round trip on every poll."""
    if is_sqlite(engine):
        pytest.skip("PostgreSQL only")
    await _device(engine)
    reads = PointReads(engine)
    try:
        for _ in range(3):
            assert await device_facts(reads, MAC) is not None
        queries = await _on_point_read_connections(engine, "query")
        assert queries, "no point-read connection open"
        for query in queries:  # what each connection ran last
            assert "RESET ALL" not in query
            assert "devices" in query
    finally:
        await reads.dispose()


async def test_a_postgresql_read_stuck_behind_a_lock_fails_instead_of_waiting(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll waits for a table lock (a migration, VACUUM FULL) only so long, and the
    reads work again once the lock is gone."""
    if is_sqlite(engine):
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(asyncpg_reads, "READ_TIMEOUT_S", 0.5)
    await _device(engine)
    reads = PointReads(engine)
    try:
        async with engine.connect() as locker:
            await locker.execute(text("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(DatabaseTimeout):  # the read's own, not this test's guard
                await asyncio.wait_for(device_facts(reads, MAC), 5)
            assert time.monotonic() - started < 3
            await locker.rollback()
        facts = await device_facts(reads, MAC)
        assert facts is not None and facts.mac == MAC
    finally:
        await reads.dispose()


async def test_a_postgresql_server_that_never_answers_is_a_database_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts the connection and says nothing (overloaded, half dead):
    the read gives up as it does behind a lock, so the poll is told to come back."""
    monkeypatch.setattr(asyncpg_reads, "READ_TIMEOUT_S", 0.3)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = make_url(f"postgresql+asyncpg://dls@127.0.0.1:{port}/dls")
    reads = asyncpg_reads.AsyncpgReads(url, postgresql_asyncpg.dialect(), 1)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseTimeout):
            await asyncio.wait_for(reads.rows(select(literal_column("1")), {}), 5)
        assert time.monotonic() - started < 3
    finally:
        await reads.close()
        server.close()
        await server.wait_closed()


async def test_postgresql_reads_survive_their_connections_being_dropped(
    engine: AsyncEngine,
) -> None:
    if is_sqlite(engine):
        pytest.skip("PostgreSQL only")
    await _device(engine)
    reads = PointReads(engine)
    try:
        assert await device_facts(reads, MAC) is not None
        assert len(await _on_point_read_connections(engine, "pg_terminate_backend(pid)")) >= 1
        for _ in range(READ_POOL_SIZE * 2):
            assert await device_facts(reads, MAC) is not None
    finally:
        await reads.dispose()


async def test_a_decoy_is_read_for_an_unknown_mac_and_never_returned(engine: AsyncEngine) -> None:
    """The decoy costs an unknown MAC a registered device's read; what comes back is the
    requested MAC's facts or nothing, on the point reads and in a transaction alike."""
    device_id = await _device(engine)
    async with session_factory(engine)() as session, session.begin():
        other = Device(mac="001565000002", vendor="yealink", model="T46U", tenant_id="100000000001")
        session.add(other)
    reads = PointReads(engine)
    try:
        assert await device_facts(reads, "001565000000", decoy=device_id) is None
        assert await device_facts(reads, "001565000000", decoy=0) is None
        own = await device_facts(reads, "001565000002", decoy=device_id)
        assert own is not None and (own.id, own.mac) == (other.id, "001565000002")
        async with session_factory(engine)() as session:
            assert await device_facts(session, "001565000000", decoy=device_id) is None
            found = await device_facts(session, MAC, decoy=other.id)
            assert found is not None and found.id == device_id
    finally:
        await reads.dispose()
