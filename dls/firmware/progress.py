"""What devices tell us about a rollout, recorded off the request path.

Three signals move a released device along:

- **a download**: the device path appends to ``DownloadLog`` (memory only) and a
  background task marks the devices *downloading* in one statement per flush;
- **a version report**: every fetch a device makes carries the version it runs (its
  User-Agent, or the WPI ``software-version`` item); the provisioning ledger writes those
  in batches and then hands the batch to ``record_reports`` (a ledger observer), which
  compares each with the device's rollout target (``engine.classify_report``);
- **a reported failure**: a delivery channel that hears of one (a WPI SoftwareDeployment
  job's failed status) calls ``record_failure``.

None of this is a synchronous database write on the device path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dls.background import FailureLog, cancel_and_wait
from dls.db.types import utcnow
from dls.firmware.engine import (
    ACTIVE_STATUSES,
    FINAL_STATES,
    OPEN_STATES,
    DeviceState,
    classify_report,
)
from dls.firmware.models import Rollout, RolloutDevice
from dls.metrics import DROPPED

__all__ = ["DownloadLog", "record_downloads", "record_failure", "record_reports"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds
MAX_PENDING = 100_000  # devices remembered between flushes; more are dropped, never blocking


def _open_memberships(device_ids: Sequence[int]):  # type: ignore[no-untyped-def]
    return (
        select(RolloutDevice)
        .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
        .where(
            RolloutDevice.device_id.in_(device_ids),
            RolloutDevice.state.in_(OPEN_STATES),
            Rollout.status.in_(ACTIVE_STATUSES),
        )
    )


async def record_reports(
    session: AsyncSession, reports: Mapping[int, str], now: dt.datetime
) -> int:
    """Apply version reports (device id -> version); how many devices changed state."""
    if not reports:
        return 0
    changed = 0
    ids = list(reports)
    for start in range(0, len(ids), 500):
        memberships = await session.scalars(_open_memberships(ids[start : start + 500]))
        for member in memberships:
            reported = reports[member.device_id][:64]
            verdict = classify_report(member.version, member.from_version, reported)
            if member.reported_version != reported:
                member.reported_version = reported
                member.updated_at = now
            if verdict is None:
                continue
            member.state = verdict
            member.finished_at = now
            if verdict is DeviceState.FAILED:
                member.detail = f"reported version {reported}, not {member.version}"[:255]
            changed += 1
    await session.flush()
    return changed


async def record_failure(
    session: AsyncSession, device_id: int, detail: str, now: dt.datetime
) -> bool:
    """A delivery channel reports that the device failed to install; whether it counted."""
    member = await session.scalar(_open_memberships([device_id]))
    if member is None:
        return False
    member.state = DeviceState.FAILED
    member.detail = f"reported failure: {detail}"[:255]
    member.finished_at = member.updated_at = now
    await session.flush()
    return True


async def record_downloads(
    session: AsyncSession, device_ids: Sequence[int], now: dt.datetime
) -> None:
    """Offered devices that fetched an image are downloading. A device whose report got
    there first (the ledger flushes on its own clock) keeps its state; the download is
    still noted."""
    active = select(Rollout.id).where(Rollout.status.in_(ACTIVE_STATUSES))
    for start in range(0, len(device_ids), 500):
        chunk = device_ids[start : start + 500]
        await session.execute(
            update(RolloutDevice)
            .where(
                RolloutDevice.device_id.in_(chunk),
                RolloutDevice.state == DeviceState.OFFERED,
                RolloutDevice.rollout_id.in_(active),
            )
            .values(state=DeviceState.DOWNLOADING, download_started_at=now, updated_at=now)
        )
        # Whatever the rollout's state now: its halt may have come first (the ledger's
        # report of a wrong version can be flushed before this download note).
        await session.execute(
            update(RolloutDevice)
            .where(
                RolloutDevice.device_id.in_(chunk),
                RolloutDevice.state.in_(FINAL_STATES),
                RolloutDevice.download_started_at.is_(None),
            )
            .values(download_started_at=now)
        )


class DownloadLog:
    """Devices that started a download since the last flush; flushed by a background task."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._devices: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._failures = FailureLog(log, "firmware download flush")

    def started(self, device_id: int) -> None:
        if len(self._devices) >= MAX_PENDING and device_id not in self._devices:
            DROPPED.labels("firmware_downloads").inc()
            return
        self._devices.add(device_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="firmware-downloads")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception as exc:
                self._failures.failed(exc)
            else:
                self._failures.succeeded()

    async def flush(self) -> None:
        devices, self._devices = self._devices, set()
        if not devices:
            return
        try:
            async with self._sessions() as session, session.begin():
                await record_downloads(session, sorted(devices), utcnow())
        except Exception:
            self._devices |= devices
            raise
