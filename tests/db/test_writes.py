"""Write bursts: all or nothing, a guarded statement that misses writes nothing, and on
SQLite a burst that meets the write lock taken waits for it instead of failing."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.db import writes as writes_module
from dls.db.engine import WRITER, is_sqlite, session_factory
from dls.db.types import utcnow
from dls.db.unavailable import database_unavailable
from dls.db.writes import Write, WriteBursts, WriteConflict
from dls.devices.unify import WpiDevice

pytestmark = pytest.mark.db

PHONES = WpiDevice.__table__
INSERT = insert(PHONES).values(
    mac=bindparam("k_mac"),
    bound=False,
    contact_failures=0,
    secure_refused=False,
    pin_failures=0,
    first_seen=bindparam("at"),
    last_seen=bindparam("at"),
    version=0,
)
GUARDED = (
    update(PHONES)
    .where(PHONES.c.mac == bindparam("k_mac"), PHONES.c.version == bindparam("k_version"))
    .values(version=PHONES.c.version + 1, last_address=bindparam("last_address"))
)


def _insert(mac: str) -> Write:
    return Write(INSERT, {"k_mac": mac, "at": utcnow()})


def _guarded(mac: str, version: int, address: str) -> Write:
    return Write(GUARDED, {"k_mac": mac, "k_version": version, "last_address": address})


async def _phones(engine: AsyncEngine) -> dict[str, tuple[int, str | None]]:
    async with engine.connect() as connection:
        columns = (PHONES.c.mac, PHONES.c.version, PHONES.c.last_address)
        rows = await connection.execute(select(*columns))
        return {mac: (version, address) for mac, version, address in rows}


async def test_a_burst_is_written_whole(engine: AsyncEngine) -> None:
    writes = WriteBursts(engine)
    try:
        await writes.run([_insert("000000000001"), _insert("000000000002")])
        await writes.run([_guarded("000000000001", 0, "10.0.0.1")])
        assert await _phones(engine) == {
            "000000000001": (1, "10.0.0.1"),
            "000000000002": (0, None),
        }
    finally:
        writes.dispose()


async def test_a_guard_that_misses_writes_nothing(engine: AsyncEngine) -> None:
    writes = WriteBursts(engine)
    try:
        await writes.run([_insert("000000000001")])
        with pytest.raises(WriteConflict):
            # The first statement would succeed; the second was based on a stale read.
            await writes.run([_insert("000000000002"), _guarded("000000000001", 5, "x")])
        with pytest.raises(IntegrityError):
            await writes.run([_guarded("000000000001", 0, "y"), _insert("000000000001")])
        assert await _phones(engine) == {"000000000001": (0, None)}
        await writes.run([_guarded("000000000001", 0, "10.0.0.2")])  # still usable
        assert await _phones(engine) == {"000000000001": (1, "10.0.0.2")}
    finally:
        writes.dispose()


async def test_an_executemany_is_not_counted(engine: AsyncEngine) -> None:
    writes = WriteBursts(engine)
    try:
        at = utcnow()
        await writes.run(
            [Write(INSERT, [{"k_mac": f"00000000000{n}", "at": at} for n in range(3)])]
        )
        assert len(await _phones(engine)) == 3
    finally:
        writes.dispose()


async def test_a_burst_waits_for_a_lock_held_elsewhere(engine: AsyncEngine) -> None:
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL locks rows, not the database")
    writes = WriteBursts(engine)
    try:
        await writes.run([_insert("000000000001")])
        async with session_factory(engine)() as session, session.begin():
            await session.connection(execution_options=WRITER)  # BEGIN IMMEDIATE: the lock
            burst = asyncio.create_task(writes.run([_guarded("000000000001", 0, "late")]))
            await asyncio.sleep(0.1)  # longer than the burst's looks on the event loop
            assert not burst.done()
        await asyncio.wait_for(burst, 5)
        assert await _phones(engine) == {"000000000001": (1, "late")}
    finally:
        writes.dispose()


async def test_off_the_loop_a_burst_runs_in_the_writer_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    burst = writes_module._burst

    def spy(*args: object) -> None:
        threads.append(threading.current_thread().name)
        burst(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(writes_module, "_burst", spy)
    writes = WriteBursts(engine)
    try:
        await writes.run_off_loop([_insert("000000000001")])
        await writes.run_off_loop([_guarded("000000000001", 0, "10.0.0.1")])
        with pytest.raises(WriteConflict):  # guarded as on the loop
            await writes.run_off_loop([_guarded("000000000001", 0, "10.0.0.2")])
        assert await _phones(engine) == {"000000000001": (1, "10.0.0.1")}
    finally:
        writes.dispose()
    if is_sqlite(engine):
        assert threads and all(name.startswith("dls-sqlite-writer") for name in threads)
    else:
        assert threads == []  # PostgreSQL: the async engine's transaction, as run()


async def test_off_the_loop_a_lock_held_too_long_is_the_database_unavailable(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread waits for SQLite's lock while the loop goes on; past its busy
    timeout the burst fails as a database that cannot answer now (the ledger logs that
    once and keeps the entries), not as a bug."""
    if not is_sqlite(engine):
        pytest.skip("PostgreSQL locks rows, not the database")
    monkeypatch.setattr(writes_module, "THREAD_BUSY_TIMEOUT_MS", 300)
    writes = WriteBursts(engine)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.connection(execution_options=WRITER)  # BEGIN IMMEDIATE: the lock
            with pytest.raises(OperationalError) as failure:
                await writes.run_off_loop([_insert("000000000001")])
        assert database_unavailable(failure.value)
        assert ticks >= 10  # the loop ran on meanwhile
        await writes.run_off_loop([_insert("000000000001")])  # the lock is free again
        assert list(await _phones(engine)) == ["000000000001"]
    finally:
        ticking.cancel()
        writes.dispose()


async def test_commits_on_the_loop_are_checkpointed_in_a_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not is_sqlite(engine):
        pytest.skip("a SQLite WAL matter")
    threads: list[int] = []
    checkpoint = writes_module._checkpoint

    def spy(database: str) -> None:
        checkpoint(database)
        threads.append(threading.get_ident())  # once done: a checkpoint under way is busy

    monkeypatch.setattr(writes_module, "_checkpoint", spy)
    writes = WriteBursts(engine)
    try:
        for number in range(3):  # within a second: one checkpoint
            await writes.run([_insert(f"00000000000{number}")])
        for _ in range(500):
            if threads:
                break
            await asyncio.sleep(0.01)
        assert len(threads) == 1 and threads[0] != threading.get_ident()
        monkeypatch.setattr(writes_module, "CHECKPOINT_EVERY_S", 0.0)
        await asyncio.sleep(0.05)  # the first one is done
        await writes.run([_insert("000000000009")])
        for _ in range(500):
            if len(threads) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(threads) == 2
        async with engine.connect() as connection:  # nothing left behind in the WAL
            busy, frames, copied = (
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            ).one()
        assert busy == 0 and frames == copied
    finally:
        writes.dispose()


async def test_a_committed_burst_is_not_undone_when_no_checkpoint_can_start(
    engine: AsyncEngine,
) -> None:
    # At shutdown the ledger's last flush may commit after the loop's executor has gone:
    # the commit stands and the caller is told so (else it would write the batch again).
    if not is_sqlite(engine):
        pytest.skip("a SQLite WAL matter")
    writes = WriteBursts(engine)
    try:
        await asyncio.get_running_loop().shutdown_default_executor()
        await writes.run([_insert("000000000001")])
        assert list(await _phones(engine)) == ["000000000001"]
    finally:
        writes.dispose()


async def test_database_errors_do_not_carry_the_values_written(engine: AsyncEngine) -> None:
    # What the device path writes is ciphertexts, keyed hashes and inventories; an error
    # logged with its statement must not copy them into the log.
    secret = "a0b1c2d3e4f5"  # the row's MAC, twice: the second insert violates the key
    async with engine.begin() as connection:
        await connection.execute(INSERT, {"k_mac": secret, "at": utcnow()})
    with pytest.raises(IntegrityError) as failure:
        async with engine.begin() as connection:
            await connection.execute(INSERT, {"k_mac": secret, "at": utcnow()})
    assert secret not in str(failure.value)
    assert "hidden due to hide_parameters" in str(failure.value)
