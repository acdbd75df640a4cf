"""A migrated database with services, and a small fleet built straight in the tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dls.config import Settings
from dls.db.types import utcnow
from dls.devices.models import Device, DeviceGroup, DeviceStatus, Scope, SettingsDocument
from dls.firmware.blobstore import BlobStore
from dls.firmware.catalog import model_key
from dls.firmware.imports import CheckedRequest, ImportResult, receive_image, record_image
from dls.firmware.models import ChecksumSource, FirmwareImage, FirmwareImageModel
from dls.firmware.versions import version_key
from dls.services import Services
from dls.tenancy import service
from dls.tenancy.models import Tenant, TenantKind
from tests.conftest import in_process_services

_MACS = itertools.count(1)


@pytest.fixture
def firmware_settings() -> dict[str, Any]:
    """Overrides a test module may replace (e.g. the accel-redirect location)."""
    return {}


@pytest.fixture
async def services(
    engine: AsyncEngine, make_settings: Callable[..., Settings], firmware_settings: dict[str, Any]
) -> AsyncIterator[Services]:
    settings = make_settings(**firmware_settings)
    services = in_process_services(settings, engine)
    yield services
    await services.reads.dispose()  # fmt: skip


@dataclass
class Fleet:
    """Tenants, groups, devices and images made directly in the tables."""

    services: Services

    async def tenant(self, name: str = "Customer") -> Tenant:
        async with self.services.sessions() as session, session.begin():
            return await service.create_tenant(
                session, kind=TenantKind.CUSTOMER, name=name, country="DE", eu=True
            )

    async def group(self, tenant: Tenant, name: str = "Reception") -> int:
        async with self.services.sessions() as session, session.begin():
            group = DeviceGroup(tenant_id=tenant.tenant_id, name=name)
            session.add(group)
            await session.flush()
            return group.id

    async def device(
        self,
        tenant: Tenant,
        vendor: str = "yealink",
        model: str = "T46U",
        firmware: str | None = "108.86.0.90",
        *,
        group_id: int | None = None,
        status: DeviceStatus = DeviceStatus.ACTIVE,
    ) -> Device:
        async with self.services.sessions() as session, session.begin():
            device = Device(
                mac=f"02fe00{next(_MACS):06x}",
                vendor=vendor,
                model=model,
                firmware_version=firmware,
                tenant_id=tenant.tenant_id,
                group_id=group_id,
                status=status,
            )
            session.add(device)
            await session.flush()
            return device

    async def pin(self, device: Device, version: str | None) -> None:
        """The device's own settings document, pinning ``version``."""
        async with self.services.sessions() as session, session.begin():
            session.add(
                SettingsDocument(
                    scope=Scope.DEVICE,
                    scope_key=str(device.id),
                    data={"firmware": {"version": version} if version else None},
                )
            )

    async def image(
        self,
        vendor: str = "yealink",
        version: str = "108.87.0.1",
        models: tuple[str, ...] = ("T46U",),
    ) -> FirmwareImage:
        """An image row (no blob): enough for targets, rollouts and offers."""
        async with self.services.sessions() as session, session.begin():
            image = FirmwareImage(
                vendor=vendor,
                version=version,
                version_key=version_key(version),
                models=list(models),
                sha256=hashlib.sha256(f"{vendor}{version}".encode()).hexdigest(),
                size=1024,
                file_name=f"{vendor}-{version}.rom",
                checksum_source=ChecksumSource.OPERATOR,
                imported_at=utcnow(),
            )
            session.add(image)
            await session.flush()
            for model in models:
                session.add(
                    FirmwareImageModel(
                        vendor=vendor,
                        model_key=model_key(model),
                        version_key=version_key(version),
                        image_id=image.id,
                    )
                )
            return image


@pytest.fixture
def fleet(services: Services) -> Fleet:
    return Fleet(services)


NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


async def import_image(
    session: AsyncSession,
    store: BlobStore,
    checked: CheckedRequest,
    chunks: AsyncIterable[bytes],
    *,
    max_size: int,
    imported_by: int | None,
    now: dt.datetime,
) -> ImportResult:
    """An image received and recorded in ``session``'s transaction, as the API and the
    command line do in two steps."""
    stored = await receive_image(store, checked, chunks, max_size=max_size)
    return await record_image(session, checked, stored, imported_by, now)
