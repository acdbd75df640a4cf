"""Revisions are version counters: two changes based on the same read cannot both commit.

A device's configuration revision is made of its documents' revisions and its own, and
renderings are cached by it: two contents under one revision would leave a phone with
the first one's rendering for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.exc import StaleDataError

from dls.db.engine import session_factory
from dls.devices.models import Device, Scope, SettingsDocument
from dls.tenancy.models import Tenant, TenantKind

pytestmark = pytest.mark.db

TENANT = "100000000042"


async def _rows(engine: AsyncEngine) -> tuple[int, int]:
    async with session_factory(engine)() as session, session.begin():
        session.add(Tenant(tenant_id=TENANT, kind=TenantKind.CUSTOMER, name="c", country="DE"))
        await session.flush()
        document = SettingsDocument(
            scope=Scope.TENANT, scope_key=TENANT, data={"language": "de"}, revision=1
        )
        device = Device(mac="001565000042", vendor="yealink", model="T46U", tenant_id=TENANT)
        session.add_all([document, device])
    return document.id, device.id


async def _race(
    engine: AsyncEngine, entity: type[Any], row_id: int, change: Callable[[Any, str], None]
) -> Any:
    """Two changes of one row, both based on the same read: the later commit fails and
    the earlier one's content stands."""
    sessions = session_factory(engine)
    async with sessions() as late:
        stale = await late.get(entity, row_id)
        await late.commit()  # its read is over; the object keeps what it read
        async with sessions() as early, early.begin():
            change(await early.get(entity, row_id), "first")
        change(stale, "second")
        late.add(stale)
        with pytest.raises(StaleDataError):
            await late.commit()
    async with sessions() as session:
        return await session.get(entity, row_id)


def _document_change(document: SettingsDocument, language: str) -> None:
    document.data = {"language": language}
    document.revision += 1


def _device_change(device: Device, model: str) -> None:
    device.model = model
    device.revision += 1


@pytest.mark.parametrize(
    ("entity", "change", "read"),
    [
        (SettingsDocument, _document_change, lambda row: row.data["language"]),
        (Device, _device_change, lambda row: row.model),
    ],
    ids=["settings-document", "device"],
)
async def test_the_second_of_two_changes_from_one_read_fails(
    engine: AsyncEngine,
    entity: type[Any],
    change: Callable[[Any, str], None],
    read: Callable[[Any], str],
) -> None:
    document_id, device_id = await _rows(engine)
    row_id = document_id if entity is SettingsDocument else device_id
    stored = await _race(engine, entity, row_id, change)
    assert (read(stored), stored.revision) == ("first", 2)


async def test_a_change_based_on_the_current_revision_commits(engine: AsyncEngine) -> None:
    document_id, _ = await _rows(engine)
    async with session_factory(engine)() as session, session.begin():
        document = await session.get(SettingsDocument, document_id)
        assert document is not None
        _document_change(document, "fr")
    async with session_factory(engine)() as session:
        found = await session.scalar(select(SettingsDocument.revision))
    assert found == 2
