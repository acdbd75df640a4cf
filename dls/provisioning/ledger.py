"""What devices fetched, written in batches off the request path.

A poll appends to an in-memory buffer and returns; a background task writes the buffer
every FLUSH_INTERVAL (or sooner when it fills): the ledger rows, the devices' last-seen
facts and status, unclaimed devices, and the last refusal of devices whose requests did
not prove them (the latest per device and round). A crash loses at most one interval of "last
seen" facts, never configuration.

A batch is written in transactions of about WRITE_CHUNK fetches, each holding every
fetch of its devices (a device's last-seen facts come from its latest fetch in the
batch), so that no transaction holds SQLite's write lock, or the loop, for long: a
second's thousand fetches as one transaction held the event loop for 30-40 ms on a slow
machine, a pause every poll arriving meanwhile waited out (p99 about 50 ms at half
load); on PostgreSQL SQLAlchemy prepares an executemany's parameters on the loop (p99 17
ms at 500 polls/s against 12 ms in parts).

Each part is two statements, each taking the part's rows as one JSON text
(``dls.provisioning.fetch_rows``); on SQLite they run in the writer thread
(``WriteBursts.run_off_loop``), so SQLite's work runs on the other core while the loop
serves polls.

Unknown MACs are recorded as unclaimed only within a budget: a scan over MACs from one
address, or from many, cannot grow the table faster than NEW_UNCLAIMED_PER_MINUTE.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dls.background import FailureLog, cancel_and_wait
from dls.db.engine import WRITER
from dls.db.types import storable
from dls.db.unavailable import database_unavailable, describe
from dls.db.writes import Write, WriteBursts, run_burst
from dls.devices.models import Device, RefusalReason, UnclaimedDevice
from dls.metrics import DROPPED
from dls.provisioning.fetch_rows import fetch_writes

__all__ = ["Fetch", "Ledger", "Refused", "Sighting"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds
FLUSH_SIZE = 1000  # entries that trigger an early flush
WRITE_CHUNK = 64  # fetches per transaction
WRITE_GAP_S = 0.001  # between two: time for the loop to read and answer what came in
STOP_WAIT_S = 10.0  # for a flush under way at shutdown
MAX_BUFFERED = 100_000  # beyond this, new entries are dropped (and counted), never blocking
REJECTIONS_BEFORE_DROP = 3  # rounds in a row the database rejects a part before it goes
NEW_UNCLAIMED_PER_MINUTE = 120  # per process
NEW_UNCLAIMED_PER_ADDRESS_PER_MINUTE = 10


class Fetch(NamedTuple):  # one per poll: a tuple is the cheapest record to build
    """A successful fetch by a registered device."""

    device_id: int
    file: str
    content_hash: str
    revision: str
    at: dt.datetime
    address: str | None
    user_agent: str | None
    firmware_version: str | None
    # DeviceFacts.firmware_managed when it fetched: without it no rollout has offered the
    # device anything, so its version report can change no rollout (dls.firmware.runtime).
    firmware_managed: bool = True


class Sighting(NamedTuple):
    """A request from a device no tenant has registered."""

    mac: str
    vendor: str
    model: str | None
    firmware_version: str | None
    address: str | None
    user_agent: str | None
    at: dt.datetime


class Refused(NamedTuple):
    """A request that named a registered device and did not prove it."""

    device_id: int
    reason: RefusalReason
    address: str | None
    at: dt.datetime


class _Budget:
    """Sliding one-minute window of new unclaimed MACs, overall and per address."""

    def __init__(self) -> None:
        self._recent: deque[tuple[float, str]] = deque()
        self._known: set[str] = set()

    def allow(self, mac: str, address: str | None) -> bool:
        if mac in self._known:
            return True  # already recorded: updating it grows nothing
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > 60:
            self._recent.popleft()
        per_address = sum(1 for _, a in self._recent if a == address)
        if len(self._recent) >= NEW_UNCLAIMED_PER_MINUTE or (
            per_address >= NEW_UNCLAIMED_PER_ADDRESS_PER_MINUTE
        ):
            return False
        self._recent.append((now, address or "-"))
        if len(self._known) < 100_000:
            self._known.add(mac)
        return True


# What a database (or its driver, encoding a value) raises about the rows themselves.
_REJECTIONS = (StatementError, UnicodeError)


class Ledger:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], writes: WriteBursts | None = None
    ) -> None:
        self._sessions = sessions
        self.writes = writes
        # Which statements its parts take (fetch_rows): without bursts, executemany ones.
        self._dialect = writes.dialect if writes is not None else ""
        self._fetches: list[Fetch] = []
        self._sightings: dict[str, Sighting] = {}
        # One per registered device at most: a flood of bad requests naming a device is
        # one row update a round.
        self._refused: dict[int, Refused] = {}
        self._budget = _Budget()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = FailureLog(log, "ledger flush")
        self._rejected_rounds = 0  # rounds in a row the database refused the front part
        # Called with each batch once it is written (firmware rollouts read the versions
        # devices report); their own failures are logged and do not undo the batch.
        self.observers: list[Callable[[Sequence[Fetch]], Awaitable[None]]] = []

    def fetched(self, fetch: Fetch) -> None:
        if len(self._fetches) >= MAX_BUFFERED:
            DROPPED.labels("ledger").inc()
            return
        self._fetches.append(fetch)
        if len(self._fetches) >= FLUSH_SIZE:
            self._wake.set()

    def sighted(self, sighting: Sighting) -> None:
        if sighting.mac in self._sightings or self._budget.allow(sighting.mac, sighting.address):
            self._sightings[sighting.mac] = sighting

    def refused(self, refused: Refused) -> None:
        self._refused[refused.device_id] = refused

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-flush")

    async def stop(self) -> None:
        """Write what is buffered and end the flush loop. A flush under way finishes
        first: cancelled while a part waited on the database, it would put that part back
        even if its commit went through, and the final flush would write it again. Only a
        flush still running after STOP_WAIT_S (the database hanging) is cancelled."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_S)
            except TimeoutError:
                log.warning("ledger flush still running after %s s; cancelled", STOP_WAIT_S)
                await cancel_and_wait(self._task)
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                # The database may be briefly away; the entries wait for the next round.
                self._failures.failed(exc)
            else:
                self._failures.succeeded()

    async def flush(self) -> None:
        fetches, self._fetches = self._fetches, []
        sightings, self._sightings = self._sightings, {}
        refused, self._refused = self._refused, {}
        if not fetches and not sightings and not refused:
            return
        parts = _by_devices(fetches, WRITE_CHUNK) or [[]]
        written = 0
        try:
            for part in parts:
                if written:
                    await asyncio.sleep(WRITE_GAP_S)
                await self._write(
                    fetch_writes(part, self._dialect),
                    list(sightings.values()) if not written else [],
                    list(refused.values()) if not written else [],
                )
                written += 1
        except BaseException as exc:
            # What was not written goes back to the front of the buffer, for the next
            # round or the final flush at shutdown (a cancellation lands between parts).
            unwritten = [fetch for part in parts[written:] for fetch in part]
            notes = 0 if written else len(sightings) + len(refused)
            if self._drop(exc, len(parts[written]), notes):
                unwritten, sightings, refused = unwritten[len(parts[written]) :], {}, {}
            self._fetches[:0] = unwritten[: MAX_BUFFERED - len(self._fetches)]
            if not written:
                for mac, sighting in sightings.items():
                    self._sightings.setdefault(mac, sighting)
                for device_id, refusal in refused.items():
                    self._refused.setdefault(device_id, refusal)
            raise
        self._rejected_rounds = 0
        # Observers see a batch once all of it is written. Of one that failed part-way
        # they see only the rest, with a later batch: a device's next fetch reports its
        # version again.
        for observer in self.observers if fetches else ():
            try:
                await observer(fetches)
            except Exception:
                log.exception("ledger observer failed")

    def _drop(self, exc: BaseException, fetches: int, notes: int) -> bool:
        """Whether to drop the part that failed: the database or its driver rejected its
        rows (not a database away, ``database_unavailable``; not a bug elsewhere, which
        keeps them) REJECTIONS_BEFORE_DROP rounds in a row. Rows it cannot hold (a value
        that slipped past ``storable``: a bug) would be rejected every round, and every
        fetch after them would wait behind them for good."""
        if not isinstance(exc, _REJECTIONS) or database_unavailable(exc):
            self._rejected_rounds = 0
            return False
        self._rejected_rounds += 1
        if self._rejected_rounds < REJECTIONS_BEFORE_DROP:
            return False
        self._rejected_rounds = 0
        DROPPED.labels("ledger").inc(fetches + notes)
        log.error(
            "ledger: the database refused a part %d rounds in a row (%s); "
            "dropped its %d fetches and %d sightings or refusals",
            REJECTIONS_BEFORE_DROP,
            describe(exc),
            fetches,
            notes,
        )
        return True

    async def _write(
        self, fetches: list[Write], sightings: list[Sighting], refused: list[Refused]
    ) -> None:
        """One transaction; a burst (``dls.db.writes``) when there are only fetches, so on
        SQLite the write lock is not held across hand-offs to a database thread while
        the device path's own writes wait for it."""
        if self.writes is not None and not sightings and not refused:
            await self.writes.run_off_loop(fetches)
            return
        async with self._sessions() as session, session.begin():
            await session.connection(execution_options=WRITER)
            await run_burst(session, fetches)
            await _write_sightings(session, sightings)
            if refused:
                await session.execute(_REFUSED, [_refused_row(r) for r in refused])


def _by_devices(fetches: list[Fetch], size: int) -> list[list[Fetch]]:
    """``fetches`` in parts of about ``size``, every fetch of a device in one part (in the
    order they came), so each part carries its devices' latest fetch."""
    per_device: dict[int, list[Fetch]] = {}
    for fetch in fetches:
        per_device.setdefault(fetch.device_id, []).append(fetch)
    parts: list[list[Fetch]] = []
    part: list[Fetch] = []
    for device_fetches in per_device.values():
        part += device_fetches
        if len(part) >= size:
            parts.append(part)
            part = []
    if part:
        parts.append(part)
    return parts


async def _write_sightings(session: AsyncSession, sightings: list[Sighting]) -> None:
    if not sightings:
        return
    macs = [s.mac for s in sightings]
    registered = set(await session.scalars(select(Device.mac).where(Device.mac.in_(macs))))
    known = {
        u.mac: u
        for u in await session.scalars(select(UnclaimedDevice).where(UnclaimedDevice.mac.in_(macs)))
    }
    for sighting in sightings:
        if sighting.mac in registered:
            continue  # claimed since; its next fetch is served normally
        row = known.get(sighting.mac)
        if row is None:
            session.add(
                UnclaimedDevice(
                    mac=sighting.mac,
                    vendor=sighting.vendor,
                    model=sighting.model,
                    firmware_version=sighting.firmware_version,
                    address=sighting.address,
                    user_agent=storable(sighting.user_agent, 255),
                    first_seen=sighting.at,
                    last_seen=sighting.at,
                    requests=1,
                )
            )
        else:
            await session.execute(
                update(UnclaimedDevice)
                .where(UnclaimedDevice.mac == sighting.mac)
                .values(
                    last_seen=sighting.at,
                    address=sighting.address,
                    model=sighting.model or row.model,
                    firmware_version=sighting.firmware_version or row.firmware_version,
                    user_agent=storable(sighting.user_agent, 255),
                    requests=UnclaimedDevice.requests + 1,
                )
            )


_REFUSED = (
    update(Device.__table__)
    .where(Device.__table__.c.id == bindparam("b_device"))
    .values(
        last_refused_at=bindparam("b_at"),
        last_refused_reason=bindparam("b_reason"),
        last_refused_address=bindparam("b_address"),
    )
)


def _refused_row(refused: Refused) -> dict[str, object]:
    return {
        "b_device": refused.device_id,
        "b_at": refused.at,
        "b_reason": refused.reason,
        "b_address": storable(refused.address, 64),
    }
