"""The background task that advances running rollouts; one per process, any number of them.

Every ``interval`` seconds (and right after version reports changed a device's state) it
lists the running rollouts and advances each in its own transaction. Instances do not
coordinate: on PostgreSQL a rollout row another instance holds is skipped (``FOR UPDATE
SKIP LOCKED``); on SQLite, and in any race the lock does not cover, the rollout row's
version counter turns the second commit into ``StaleDataError``, which is logged at debug
level and retried on the next step with fresh facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from dls.background import FailureLog, cancel_and_wait
from dls.db.engine import WRITER
from dls.db.types import utcnow
from dls.firmware.engine import Decision, RolloutStatus
from dls.firmware.models import Rollout
from dls.firmware.rollouts import advance

__all__ = ["RolloutDriver"]

log = logging.getLogger(__name__)


class RolloutDriver:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        self._sessions = sessions
        self._interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = FailureLog(log, "rollout step")

    def nudge(self) -> None:
        """Step soon: something a decision depends on changed."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="firmware-rollouts")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.step()
            except Exception as exc:
                # The database may be briefly away; the next step reads fresh facts.
                self._failures.failed(exc)
            else:
                self._failures.succeeded()

    async def step(self, now: dt.datetime | None = None) -> dict[int, tuple[Decision, ...]]:
        """Advance every running rollout once; the decisions applied, by rollout id."""
        async with self._sessions() as session:
            ids = list(
                await session.scalars(
                    select(Rollout.id)
                    .where(Rollout.status == RolloutStatus.RUNNING)
                    .order_by(Rollout.id)
                )
            )
        applied = {}
        for rollout_id in ids:
            decisions = await self._advance(rollout_id, now or utcnow())
            if decisions:
                applied[rollout_id] = decisions
        return applied

    async def _advance(self, rollout_id: int, now: dt.datetime) -> tuple[Decision, ...]:
        try:
            async with self._sessions() as session, session.begin():
                # It reads, then writes: on SQLite that fails at once if another
                # connection committed in between, so it takes the write lock first.
                await session.connection(execution_options=WRITER)
                rollout = await session.scalar(
                    select(Rollout)
                    .where(Rollout.id == rollout_id, Rollout.status == RolloutStatus.RUNNING)
                    .with_for_update(skip_locked=True)
                )
                if rollout is None:
                    return ()
                decisions = await advance(session, rollout, now)
        except (StaleDataError, OperationalError) as error:
            # Another instance advanced it (or held SQLite's write lock past the busy
            # timeout): its turn.
            log.debug("rollout %s not advanced here: %s", rollout_id, type(error).__name__)
            return ()
        for decision in decisions:
            log.info(
                "rollout %s: %s",
                rollout_id,
                type(decision).__name__,
                extra={"fields": {"rollout": rollout_id, "decision": repr(decision)}},
            )
        return decisions
