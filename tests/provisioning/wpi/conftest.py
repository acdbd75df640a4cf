"""The device application in-process on a migrated database, a small fleet, and phones.

The device path is driven over plain HTTP here (aiohttp's test server); the TLS-only
parts (the secure listener, client certificates) are in tests/e2e/test_wpi_*.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dls.app import build_device_app
from dls.config import Settings
from dls.db.types import utcnow
from dls.devices.inheritance import SettingsLayer
from dls.devices.layers import encode_layer, purpose
from dls.devices.models import Device, DeviceStatus, Scope, SettingsDocument
from dls.devices.unify import DeviceJob, JobKind, JobState
from dls.provisioning.wpi.store import write_transaction
from dls.services import Services
from dls.sim.unify import UnifyPhone
from dls.tenancy import service
from dls.tenancy.models import Role, Tenant, TenantKind, User, WpiSecureMode
from tests.conftest import in_process_services

LINE = {"sip_user": "201", "password": "line-secret-1", "registrar": "sip.example.net"}


@pytest.fixture
async def services(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    services = in_process_services(make_settings(), engine)
    yield services
    # Its point reads' connections, else open until collected: on PostgreSQL a later
    # test that looks at the reads' connections found this test's (test_reads.py).
    await services.reads.dispose()


@pytest.fixture
async def device_client(services: Services) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_device_app(services))) as client:
        yield client


@dataclass
class Fleet:
    """Tenants, users, devices and settings written straight to the database."""

    services: Services

    async def tenant(self, mode: WpiSecureMode = WpiSecureMode.OFF, **values: Any) -> Tenant:
        async with write_transaction(self.services.sessions) as session:
            tenant = await service.create_tenant(
                session, kind=TenantKind.CUSTOMER, name=f"Customer {mode}", country="DE", eu=True
            )
            tenant.wpi_secure_mode = mode
            for key, value in values.items():
                setattr(tenant, key, value)
        return tenant

    async def user(self, tenant: Tenant, name: str, **values: Any) -> User:
        async with write_transaction(self.services.sessions) as session:
            user = User(tenant_id=tenant.tenant_id, username=name, role=Role.USER, **values)
            session.add(user)
        return user

    async def device(
        self, tenant: Tenant, mac: str, user: User | None = None, line: dict[str, Any] | None = None
    ) -> Device:
        async with write_transaction(self.services.sessions) as session:
            device = Device(
                mac=mac,
                vendor="unify",
                model="OpenStage 40",
                tenant_id=tenant.tenant_id,
                user_id=user.id if user else None,
                status=DeviceStatus.ASSIGNED if user else DeviceStatus.UNASSIGNED,
            )
            session.add(device)
            await session.flush()
            if line is not None:
                await self._settings(session, Scope.DEVICE, str(device.id), {"lines": {1: line}})
        return device

    async def settings(self, scope: Scope, key: str, layer: dict[str, Any]) -> None:
        async with write_transaction(self.services.sessions) as session:
            await self._settings(session, scope, key, layer)

    async def _settings(
        self, session: AsyncSession, scope: Scope, key: str, layer: dict[str, Any]
    ) -> None:
        data = encode_layer(
            SettingsLayer.model_validate(layer), self.services.box, purpose(scope.value, key)
        )
        existing = await session.scalar(
            select(SettingsDocument).where(
                SettingsDocument.scope == scope, SettingsDocument.scope_key == key
            )
        )
        if existing is None:
            session.add(SettingsDocument(scope=scope, scope_key=key, data=data, revision=1))
        else:
            existing.data, existing.revision = data, existing.revision + 1

    async def job(
        self, device: Device, kind: JobKind, payload: dict[str, Any] | None = None
    ) -> int:
        now = utcnow()
        async with write_transaction(self.services.sessions) as session:
            job = DeviceJob(
                device_id=device.id,
                kind=kind,
                payload=payload or {},
                state=JobState.PENDING,
                attempts=0,
                created_at=now,
                updated_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
            session.add(job)
            await session.flush()
            return job.id

    async def job_state(self, job_id: int) -> DeviceJob:
        async with self.services.sessions() as session:
            job = await session.get(DeviceJob, job_id)
            assert job is not None
            return job


@pytest.fixture
def fleet(services: Services) -> Fleet:
    return Fleet(services)


@pytest.fixture
async def make_phone(
    device_client: TestClient[Any, Any],
) -> AsyncIterator[Callable[..., UnifyPhone]]:
    phones: list[UnifyPhone] = []
    url = str(device_client.make_url("")).rstrip("/")

    def build(mac: str, **values: Any) -> UnifyPhone:
        phone = UnifyPhone(mac, device_url=url, secure_url=url, **values)
        phones.append(phone)
        return phone

    yield build
    for phone in phones:
        await phone.close()
