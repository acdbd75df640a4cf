"""Target versions per model: the operator's defaults, a tenant's, a device group's.

A target names a version that has an imported image for that model, so a device that
follows it always finds something to download. Setting ``None`` removes the level's
target and the device falls back to the level above.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.errors import DomainError
from dls.firmware.catalog import model_key
from dls.firmware.models import FirmwareImageModel, FirmwareTarget, TargetScope
from dls.firmware.versions import version_key

__all__ = ["SYSTEM_SCOPE_KEY", "image_exists", "set_target"]

SYSTEM_SCOPE_KEY = "system"


async def image_exists(session: AsyncSession, vendor: str, model: str, version: str) -> bool:
    found = await session.get(FirmwareImageModel, (vendor, model_key(model), version_key(version)))
    return found is not None


async def set_target(
    session: AsyncSession,
    scope: TargetScope,
    scope_key: str,
    vendor: str,
    model: str,
    version: str | None,
    *,
    updated_by: int | None,
    now: dt.datetime,
) -> tuple[FirmwareTarget | None, dict[str, object]]:
    """Set (or with ``version`` None, remove) one target; the row and the changes."""
    key = model_key(model)
    row = await session.scalar(
        select(FirmwareTarget).where(
            FirmwareTarget.vendor == vendor,
            FirmwareTarget.model_key == key,
            FirmwareTarget.scope == scope,
            FirmwareTarget.scope_key == scope_key,
        )
    )
    before = row.version if row else None
    if version is None:
        if row is not None:
            await session.delete(row)
            await session.flush()
        return None, ({"version": [before, None]} if before is not None else {})
    if not await image_exists(session, vendor, model, version):
        raise DomainError("version", f"no image of {vendor} {model} {version} is imported")
    if row is None:
        row = FirmwareTarget(scope=scope, scope_key=scope_key, vendor=vendor, model_key=key)
        session.add(row)
    row.model = model
    row.version = version
    row.version_key = version_key(version)
    row.updated_by = updated_by
    row.updated_at = now
    await session.flush()
    return row, ({"version": [before, version]} if before != version else {})
