"""Provisioning-ledger retention: fetches older than ``ledger_retention_days`` go.

Every successful fetch is a ledger row, and nothing else ever removes one: 100,000 phones
polling hourly for three files add seven million rows a day. Each process looks a minute
after it starts and then every PRUNE_EVERY_S, and deletes the rows older than the
retention oldest first, through the ``at`` index, PRUNE_BATCH rows per transaction with
a pause between transactions: the device path's own writes (the ledger's flushes) never
wait long for SQLite's write lock. With several workers each process prunes; a batch
that another has already deleted deletes nothing.

What each device last took stays on its own row (last revision, last seen), so the
outdated-devices answer does not depend on how much history is kept; a device's ledger
page shows the fetches of the retention period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dls.background import FailureLog, cancel_and_wait
from dls.db.engine import WRITER
from dls.db.types import utcnow
from dls.devices.models import ProvisioningRecord

__all__ = ["LedgerRetention"]

log = logging.getLogger(__name__)

FIRST_PRUNE_AFTER_S = 60.0  # not in the busy first minute of a restart's boot storm
PRUNE_EVERY_S = 3600.0
PRUNE_BATCH = 2000  # rows per transaction: a few milliseconds of the write lock
PAUSE_S = 0.05  # between two batches


class LedgerRetention:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], days: int) -> None:
        self._sessions = sessions
        self._keep = dt.timedelta(days=days) if days else None
        self._task: asyncio.Task[None] | None = None
        self._failures = FailureLog(log, "ledger retention")

    async def start(self) -> None:
        if self._keep is not None:
            self._task = asyncio.create_task(self._run(), name="ledger-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def prune(self, now: dt.datetime | None = None) -> int:
        """Delete every row older than the retention; how many went."""
        if self._keep is None:
            return 0
        cutoff = (now or utcnow()) - self._keep
        oldest = (
            select(ProvisioningRecord.id)
            .where(ProvisioningRecord.at < cutoff)
            .order_by(ProvisioningRecord.at)
            .limit(PRUNE_BATCH)
        )
        deleted = 0
        while True:
            async with self._sessions() as session, session.begin():
                await session.connection(execution_options=WRITER)
                result = await session.execute(
                    delete(ProvisioningRecord).where(ProvisioningRecord.id.in_(oldest)),
                    execution_options={"synchronize_session": False},
                )
            deleted += result.rowcount
            if result.rowcount < PRUNE_BATCH:
                return deleted
            await asyncio.sleep(PAUSE_S)

    async def _run(self) -> None:
        await asyncio.sleep(FIRST_PRUNE_AFTER_S)
        while True:
            try:
                if deleted := await self.prune():
                    log.info("ledger retention: deleted %d fetches", deleted)
            except Exception as exc:
                self._failures.failed(exc)
            else:
                self._failures.succeeded()
            await asyncio.sleep(PRUNE_EVERY_S)
