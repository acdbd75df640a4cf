"""Stopping the background tasks that services run (flush loops, dispatchers, pruning)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


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
