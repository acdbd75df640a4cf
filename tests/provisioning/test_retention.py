"""Ledger retention: fetches older than the retention go, oldest first, in batches."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.db.engine import session_factory
from dls.devices.models import Device, ProvisioningRecord
from dls.provisioning import retention as retention_module
from dls.provisioning.retention import LedgerRetention
from dls.tenancy.models import Tenant, TenantKind

pytestmark = pytest.mark.db

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


async def _ledger(engine: AsyncEngine, ages_days: list[float]) -> int:
    """One device with a fetch at each age; its id."""
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(
            Tenant(tenant_id="100000000001", kind=TenantKind.CUSTOMER, name="c", country="DE")
        )
        await session.flush()
        device = Device(
            mac="001565000001", vendor="yealink", model="T46U", tenant_id="100000000001"
        )
        session.add(device)
        await session.flush()
        await session.execute(
            insert(ProvisioningRecord),
            [
                {
                    "device_id": device.id,
                    "file": f"{age}.cfg",
                    "content_hash": "ab" * 16,
                    "revision": "r",
                    "at": NOW - dt.timedelta(days=age),
                }
                for age in ages_days
            ],
        )
        return device.id


async def _files(engine: AsyncEngine) -> list[str]:
    async with session_factory(engine)() as session:
        found = await session.scalars(select(ProvisioningRecord.file))
        return sorted(found)


async def test_fetches_older_than_the_retention_go_in_batches(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "PRUNE_BATCH", 3)  # several batches, one partial
    monkeypatch.setattr(retention_module, "PAUSE_S", 0)
    ages = [0, 1, 29.9, 30.1, 31, 45, 60, 90, 365]
    await _ledger(engine, ages)

    deleted = await LedgerRetention(session_factory(engine), days=30).prune(NOW)

    assert deleted == 6
    assert await _files(engine) == ["0.cfg", "1.cfg", "29.9.cfg"]
    assert await LedgerRetention(session_factory(engine), days=30).prune(NOW) == 0


async def test_no_retention_keeps_every_fetch(engine: AsyncEngine) -> None:
    await _ledger(engine, [0, 400, 4000])
    retention = LedgerRetention(session_factory(engine), days=0)
    await retention.start()  # starts nothing
    await retention.stop()

    assert await retention.prune(NOW + dt.timedelta(days=10_000)) == 0
    async with session_factory(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(ProvisioningRecord))
    assert count == 3
