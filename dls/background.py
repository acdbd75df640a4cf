"""The background tasks services run (flush loops, dispatchers, pruning): how their failed
rounds are logged, and how they are stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from dls.db.unavailable import database_unavailable, describe

__all__ = ["FailureLog", "cancel_and_wait"]


class FailureLog:
    """A background loop's failed rounds, logged as an operator wants to read them.

    A bug is logged with its traceback every round. The database being away (a restart,
    a lock held too long: ``database_unavailable``) is not a bug and lasts many rounds:
    it is one warning when it starts and one line when the loop's work succeeds again,
    where a traceback a second filled the log for as long as a restart took.
    """

    def __init__(self, logger: logging.Logger, work: str) -> None:
        self._log = logger
        self._work = work
        self._away_since: float | None = None

    def failed(self, exc: Exception) -> None:
        if not database_unavailable(exc):
            self._log.error("%s failed; retrying", self._work, exc_info=exc)
            return
        if self._away_since is None:
            self._away_since = time.monotonic()
            self._log.warning(
                "%s: database unavailable (%s); retrying until it answers",
                self._work,
                describe(exc),
            )

    def succeeded(self) -> None:
        if self._away_since is not None:
            away = time.monotonic() - self._away_since
            self._away_since = None
            self._log.warning("%s: database answers again after %.0f s", self._work, away)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and return once each has finished, so nothing of theirs runs after
    the caller goes on (a flush loop must not write after the final flush).

    Their cancellation is the one asked for and is not raised here; a cancellation of the
    caller while it waits is (``Task.cancelling``), where a bare ``suppress`` around the
    await would swallow it and the caller's own shutdown would hang on.
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
