"""Stopping background tasks: they end before the caller goes on, and the caller's own
cancellation is not lost."""

from __future__ import annotations

import asyncio

from dls.background import cancel_and_wait


async def test_each_task_has_finished_when_it_returns() -> None:
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits
            cleaned.append(name)

    tasks = [asyncio.create_task(loop(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert sorted(cleaned) == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_ended_on_its_own_is_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait(done)


async def test_the_callers_own_cancellation_is_passed_on() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()  # finishes only when told

    background = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(background))
    await asyncio.sleep(0)
    stopper.cancel()  # e.g. the server's shutdown timed out
    release.set()
    await asyncio.wait([stopper])
    assert stopper.cancelled()
