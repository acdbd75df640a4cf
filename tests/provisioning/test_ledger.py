"""The ledger's batched writes: what a flush leaves in the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dls.db.engine import session_factory
from dls.db.writes import WriteBursts
from dls.devices.models import (
    Device,
    DeviceStatus,
    ProvisioningRecord,
    RefusalReason,
    UnclaimedDevice,
)
from dls.provisioning import fetch_rows
from dls.provisioning import ledger as ledger_module
from dls.provisioning.ledger import Fetch, Ledger, Refused, Sighting
from dls.tenancy.models import Tenant, TenantKind

pytestmark = pytest.mark.db

T0 = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
STATUSES = [
    DeviceStatus.UNASSIGNED,
    DeviceStatus.ASSIGNED,
    DeviceStatus.SENT_TO_USER,
    DeviceStatus.PROVISIONED,
    DeviceStatus.ACTIVE,
    DeviceStatus.RETIRED,
]


async def _devices(engine: AsyncEngine) -> list[int]:
    async with session_factory(engine)() as session, session.begin():
        session.add(
            Tenant(tenant_id="100000000001", kind=TenantKind.CUSTOMER, name="c", country="DE")
        )
        await session.flush()
        devices = [
            Device(
                mac=f"0015650000{index:02x}",
                vendor="yealink",
                model="T46U",
                tenant_id="100000000001",
                status=status,
                firmware_version="108.86.0.80",
                first_seen=T0 if status is DeviceStatus.ACTIVE else None,
            )
            for index, status in enumerate(STATUSES)
        ]
        session.add_all(devices)
    return [device.id for device in devices]


def _fetch(device_id: int, at: dt.datetime, firmware: str | None, file: str = "x.cfg") -> Fetch:
    return Fetch(
        device_id=device_id,
        file=file,
        content_hash="ab" * 16,
        revision="0.1.0.1.0-1",
        at=at,
        address="192.0.2.7",
        user_agent="Yealink SIP-T46U 108.86.0.90 001565000000",
        firmware_version=firmware,
    )


@pytest.mark.parametrize("way", ["no-bursts", "bursts", "bursts-and-sighting", "executemany"])
async def test_a_flush_records_every_fetch_and_moves_each_device_on(
    engine: AsyncEngine, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way of writing: as a burst (only fetches, the server's usual flush) or in a
    session (without bursts, or with an unknown device's sighting in the batch); with
    statements over JSON rows, or executemany ones (without bursts, or where SQLite
    lacks what the JSON rows need)."""
    if way == "executemany":
        monkeypatch.setattr(fetch_rows, "rows_as_json", lambda dialect: False)
    ids = await _devices(engine)
    writes = WriteBursts(engine) if way != "no-bursts" else None
    ledger = Ledger(session_factory(engine), writes)
    later = T0 + dt.timedelta(minutes=5)
    for device_id in ids:
        ledger.fetched(_fetch(device_id, T0, None, "common.cfg"))
        ledger.fetched(_fetch(device_id, later, "108.86.0.90"))
    if way == "bursts-and-sighting":
        ledger.sighted(Sighting("00156500ffff", "yealink", "T46U", None, None, None, T0))

    await ledger.flush()
    if writes is not None:
        writes.dispose()

    async with session_factory(engine)() as session:
        records = await session.scalar(select(func.count()).select_from(ProvisioningRecord))
        devices = {d.id: d for d in await session.scalars(select(Device))}
    assert records == 2 * len(ids)
    moved = [devices[device_id].status for device_id in ids]
    assert moved == [
        DeviceStatus.PROVISIONED,  # first successful fetch
        DeviceStatus.PROVISIONED,
        DeviceStatus.PROVISIONED,
        DeviceStatus.ACTIVE,  # provisioned before: now in use
        DeviceStatus.ACTIVE,
        DeviceStatus.RETIRED,  # never revived by a fetch
    ]
    for device_id in ids:
        device = devices[device_id]
        assert device.last_seen == later  # the latest fetch of the batch wins
        assert device.last_address == "192.0.2.7"
        assert device.last_revision == "0.1.0.1.0-1"
        assert device.firmware_version == "108.86.0.90"
    assert devices[ids[0]].first_seen == later
    assert devices[ids[4]].first_seen == T0  # kept, not overwritten
    if way == "bursts-and-sighting":
        async with session_factory(engine)() as session:
            assert await session.scalar(select(UnclaimedDevice.mac)) == "00156500ffff"


@pytest.mark.parametrize("bursts", [False, True], ids=["session", "bursts"])
async def test_refusals_are_written_on_their_devices_the_latest_of_a_round(
    engine: AsyncEngine, bursts: bool
) -> None:
    """Beside fetches and without them; a device refused many times in a round is one
    update, the last refusal's; the device's revision (its version counter) and
    last-seen facts stay as they were."""
    ids = await _devices(engine)
    writes = WriteBursts(engine) if bursts else None
    ledger = Ledger(session_factory(engine), writes)
    for round_, at in enumerate((T0, T0 + dt.timedelta(seconds=1))):
        ledger.refused(Refused(ids[0], RefusalReason.NO_PASSWORD, "192.0.2.1", at))
        ledger.refused(Refused(ids[0], RefusalReason.WRONG_PASSWORD, "2001:db8::9", at))
        if round_ == 0:
            ledger.refused(Refused(ids[1], RefusalReason.WRONG_URI, None, at))
            ledger.fetched(_fetch(ids[2], T0, None))
        await ledger.flush()
    if writes is not None:
        writes.dispose()

    async with session_factory(engine)() as session:
        devices = {d.id: d for d in await session.scalars(select(Device))}
    refused = {
        device_id: (d.last_refused_at, d.last_refused_reason, d.last_refused_address)
        for device_id, d in devices.items()
        if d.last_refused_at is not None
    }
    assert refused == {
        ids[0]: (T0 + dt.timedelta(seconds=1), RefusalReason.WRONG_PASSWORD, "2001:db8::9"),
        ids[1]: (T0, RefusalReason.WRONG_URI, None),
    }
    assert [devices[i].revision for i in ids] == [1] * len(ids)
    assert devices[ids[0]].last_seen is None and devices[ids[2]].last_seen == T0


async def test_refusals_wait_for_a_database_that_is_away(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _devices(engine)
    ledger = Ledger(session_factory(engine))
    ledger.refused(Refused(ids[0], RefusalReason.NO_PASSWORD, "192.0.2.1", T0))

    async def away(*_: object) -> None:
        raise ConnectionRefusedError("database restarting")

    with monkeypatch.context() as patched:
        patched.setattr(ledger_module, "run_burst", away)
        with pytest.raises(ConnectionRefusedError):
            await ledger.flush()
    await ledger.flush()
    async with session_factory(engine)() as session:
        reasons = set(await session.scalars(select(Device.last_refused_reason)))
    assert reasons == {RefusalReason.NO_PASSWORD, None}


async def test_a_fetch_without_a_version_keeps_the_known_one(engine: AsyncEngine) -> None:
    ids = await _devices(engine)
    ledger = Ledger(session_factory(engine))
    ledger.fetched(_fetch(ids[0], T0, None))
    ledger.fetched(_fetch(ids[1], T0, None))

    await ledger.flush()

    async with session_factory(engine)() as session:
        versions = set(await session.scalars(select(Device.firmware_version)))
    assert versions == {"108.86.0.80"}


@pytest.mark.parametrize("bursts", [False, True], ids=["session", "bursts"])
async def test_what_a_fetch_carries_is_stored_as_it_came(engine: AsyncEngine, bursts: bool) -> None:
    """On SQLite a part travels as JSON text: quotes, backslashes, letters beyond ASCII
    and times in other zones or on a whole second come out as they went in."""
    ids = await _devices(engine)
    writes = WriteBursts(engine) if bursts else None
    ledger = Ledger(session_factory(engine), writes)
    agent = 'Grandstream "HT812" \\ Gerät ✓ ' + "x" * 300
    at = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    ledger.fetched(_fetch(ids[0], at, "")._replace(user_agent=agent, address="2001:db8::7"))

    await ledger.flush()
    if writes is not None:
        writes.dispose()

    async with session_factory(engine)() as session:
        record = await session.scalar(select(ProvisioningRecord))
        device = await session.get(Device, ids[0])
    assert record is not None and device is not None
    assert (record.device_id, record.at, record.address) == (ids[0], at, "2001:db8::7")
    assert record.user_agent == device.last_user_agent == agent[:255]
    assert (device.last_seen, device.first_seen) == (at, at)
    assert device.firmware_version == "108.86.0.80"  # an empty report changes nothing


@pytest.mark.parametrize("way", ["no-bursts", "bursts", "executemany"])
async def test_what_a_request_brought_that_no_database_takes_is_stored_escaped(
    engine: AsyncEngine, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp hands over a User-Agent's bytes that are not UTF-8 as lone surrogates and a
    path's %00 as NUL. Neither database takes them: one such fetch failed its whole batch,
    every round, so nothing after it was recorded. They are kept as escapes."""
    if way == "executemany":
        monkeypatch.setattr(fetch_rows, "rows_as_json", lambda dialect: False)
    ids = await _devices(engine)
    writes = WriteBursts(engine) if way != "no-bursts" else None
    ledger = Ledger(session_factory(engine), writes)
    odd = _fetch(ids[0], T0, None, "y000000000000\x00.cfg")
    ledger.fetched(odd._replace(user_agent="Yealink SIP-T46U \udcff\udcfe"))
    ledger.fetched(_fetch(ids[1], T0, None))
    ledger.sighted(
        Sighting("00156500ffff", "yealink", "T46U", None, None, "Yealink \udcc3 \x00", T0)
    )

    await ledger.flush()
    if writes is not None:
        writes.dispose()

    async with session_factory(engine)() as session:
        records = {r.device_id: r for r in await session.scalars(select(ProvisioningRecord))}
        device = await session.get(Device, ids[0])
        unclaimed = await session.scalar(select(UnclaimedDevice))
    assert set(records) == {ids[0], ids[1]}
    assert records[ids[0]].file == "y000000000000\\x00.cfg"
    assert records[ids[0]].user_agent == "Yealink SIP-T46U \\xff\\xfe"
    assert device is not None and device.last_user_agent == "Yealink SIP-T46U \\xff\\xfe"
    assert unclaimed is not None and unclaimed.user_agent == "Yealink \\xc3 \\x00"


@pytest.mark.parametrize("bursts", [False, True], ids=["session", "bursts"])
async def test_a_part_the_database_refuses_round_after_round_goes_and_the_rest_is_written(
    engine: AsyncEngine,
    bursts: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows the database will never take (here a device deleted since its fetch) held
    every later fetch back for good. After REJECTIONS_BEFORE_DROP rounds their part goes,
    logged and counted; a database away (above) still loses nothing."""
    ids = await _devices(engine)
    monkeypatch.setattr(ledger_module, "WRITE_CHUNK", 1)  # a part per device
    writes = WriteBursts(engine) if bursts else None
    ledger = Ledger(session_factory(engine), writes)
    ledger.fetched(_fetch(max(ids) + 1000, T0, None))  # no such device: refused
    ledger.fetched(_fetch(ids[0], T0, None))
    before = _dropped()

    for _ in range(ledger_module.REJECTIONS_BEFORE_DROP - 1):
        with pytest.raises(IntegrityError):
            await ledger.flush()
        assert await _records_and_last_seen(engine) == (0, {i: None for i in ids})
    with pytest.raises(IntegrityError):
        await ledger.flush()
    await ledger.flush()  # the rest, next round
    if writes is not None:
        writes.dispose()

    records, seen = await _records_and_last_seen(engine)
    assert (records, seen[ids[0]]) == (1, T0)
    assert _dropped() - before == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith("ledger: the database refused a part 3 rounds in a row (Integ")
    assert line.endswith("; dropped its 1 fetches and 0 sightings or refusals")


def _dropped() -> float:
    return REGISTRY.get_sample_value("dls_buffer_dropped_total", {"buffer": "ledger"}) or 0.0


async def _records_and_last_seen(engine: AsyncEngine) -> tuple[int, dict[int, dt.datetime | None]]:
    async with session_factory(engine)() as session:
        records = await session.scalar(select(func.count()).select_from(ProvisioningRecord))
        seen = {d.id: d.last_seen for d in await session.scalars(select(Device))}
    return records or 0, seen


@pytest.mark.parametrize("failure", [RuntimeError("database away"), asyncio.CancelledError()])
async def test_a_batch_written_in_parts_loses_and_repeats_nothing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """Where writes hold the event loop (SQLite) a batch goes in parts, each with every
    fetch of its devices. A part that fails (the database away, or the flush cancelled at
    shutdown between parts) leaves the parts before it written and puts the rest back,
    so the next flush writes each fetch exactly once and every device's latest wins."""
    ids = await _devices(engine)
    writes = WriteBursts(engine)
    ledger = Ledger(session_factory(engine), writes)
    monkeypatch.setattr(ledger_module, "WRITE_CHUNK", 3)
    for step in range(3):  # interleaved, as polls arrive: 18 fetches, 3 per device
        for device_id in ids:
            ledger.fetched(_fetch(device_id, T0 + dt.timedelta(minutes=step), None))
    real_write, calls = ledger._write, []

    async def failing_second(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise failure
        await real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "_write", failing_second)
    with pytest.raises(type(failure)):
        await ledger.flush()
    records, _ = await _records_and_last_seen(engine)
    assert records == 3  # one part: all three fetches of one device
    monkeypatch.setattr(ledger, "_write", real_write)

    await ledger.flush()
    writes.dispose()

    records, seen = await _records_and_last_seen(engine)
    assert records == 18
    assert all(seen[device_id] == T0 + dt.timedelta(minutes=2) for device_id in ids)


async def test_a_batch_is_written_in_parts_with_the_loop_free_between(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _devices(engine)
    writes = WriteBursts(engine)
    ledger = Ledger(session_factory(engine), writes)
    monkeypatch.setattr(ledger_module, "WRITE_CHUNK", 2)
    for device_id in ids:
        ledger.fetched(_fetch(device_id, T0, None))
    parts: list[int] = []
    ticks = 0

    async def ticker() -> None:  # another task: runs only when the flush lets it
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    real_run = writes.run_off_loop

    async def run(burst: list[object]) -> None:
        parts.append(ticks)
        await real_run(burst)  # type: ignore[arg-type]

    monkeypatch.setattr(writes, "run_off_loop", run)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await ledger.flush()
    task.cancel()
    writes.dispose()

    assert len(parts) == len(ids) // 2
    assert parts == sorted(set(parts))  # the other task ran between every two parts
    records, _ = await _records_and_last_seen(engine)
    assert records == len(ids)


async def test_stopping_lets_a_flush_under_way_finish_and_writes_nothing_twice(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part whose commit went through but whose answer had not come back yet (a
    database round trip) when the server stopped: cancelled there, it was put back and
    written again by the final flush."""
    ids = await _devices(engine)
    ledger = Ledger(session_factory(engine), WriteBursts(engine))
    real_write = ledger._write
    committed, answer = asyncio.Event(), asyncio.Event()

    async def slow_answer(*args: object) -> None:
        await real_write(*args)  # type: ignore[arg-type]
        committed.set()
        await answer.wait()

    monkeypatch.setattr(ledger, "_write", slow_answer)
    await ledger.start()
    for device_id in ids:
        ledger.fetched(_fetch(device_id, T0, None))
    ledger._wake.set()
    await committed.wait()
    ledger.fetched(_fetch(ids[0], T0 + dt.timedelta(minutes=1), None))  # came in meanwhile
    stopping = asyncio.create_task(ledger.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the flush under way
    answer.set()
    await stopping
    assert ledger.writes is not None
    ledger.writes.dispose()

    records, seen = await _records_and_last_seen(engine)
    assert records == len(ids) + 1
    assert seen[ids[0]] == T0 + dt.timedelta(minutes=1)


async def test_a_database_away_for_many_rounds_is_two_lines_in_the_log(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart of the database fails every flush until it is back: the log says so when
    it starts and when it ends, not with a traceback a round. A bug still gets one."""
    (device, *_) = await _devices(engine)
    real = session_factory(engine)
    trouble: list[Exception] = []

    def sessions() -> AsyncSession:
        if trouble:
            raise trouble[0]
        return real()

    monkeypatch.setattr(ledger_module, "FLUSH_INTERVAL", 0.01)
    ledger = Ledger(sessions)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, logger=ledger_module.log.name)
    trouble.append(ConnectionRefusedError(111, "Connection refused"))
    ledger.fetched(_fetch(device, T0, None))
    await ledger.start()
    try:
        await asyncio.sleep(0.3)  # dozens of failed rounds
        trouble[0] = ValueError("a bug")
        await asyncio.sleep(0.05)
        trouble.clear()
        await asyncio.sleep(0.1)
    finally:
        await ledger.stop()
    async with real() as session:
        assert await session.scalar(select(func.count()).select_from(ProvisioningRecord)) == 1
    seen = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    (first, *middle, last) = seen
    assert first == (
        "WARNING",
        "ledger flush: database unavailable (ConnectionRefusedError: [Errno 111] "
        "Connection refused); retrying until it answers",
        False,
    ), seen
    assert set(middle) == {("ERROR", "ledger flush failed; retrying", True)}, seen
    assert last[0] == "WARNING" and not last[2], seen
    assert last[1].startswith("ledger flush: database answers again after "), seen
