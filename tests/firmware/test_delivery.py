"""Which version a device is offered: pin, rollout, group, tenant, operator default."""

from __future__ import annotations

import datetime as dt

import pytest

from dls.devices.models import Device, Scope, SettingsDocument
from dls.firmware.delivery import FirmwareSource, device_pin, explain
from dls.firmware.engine import WavePlan, Window
from dls.firmware.models import Rollout, TargetScope
from dls.firmware.progress import record_downloads
from dls.firmware.rollouts import RolloutRequest, TargetSpec, create_rollout
from dls.firmware.targets import SYSTEM_SCOPE_KEY, set_target
from dls.firmware.tokens import TOKEN_LENGTH
from dls.services import Services
from tests.firmware.conftest import NOW, Fleet

pytestmark = pytest.mark.db


async def offer_version(services: Services, device: Device) -> str | None:
    async with services.sessions() as session:
        stored = await session.get(Device, device.id)
        assert stored is not None
        offer = await services.firmware.offer_for(session, stored, NOW)
    return offer.version if offer else None


async def target(
    services: Services, scope: TargetScope, key: str, version: str | None, model: str = "T46U"
) -> None:
    async with services.sessions() as session, session.begin():
        await set_target(session, scope, key, "yealink", model, version, updated_by=None, now=NOW)


async def test_the_most_specific_level_wins(services: Services, fleet: Fleet) -> None:
    for version in ("1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"):
        await fleet.image(version=version, models=("T46U", "T48U"))
    tenant = await fleet.tenant()
    group = await fleet.group(tenant)
    device = await fleet.device(tenant, group_id=group)
    assert await offer_version(services, device) is None
    await target(services, TargetScope.SYSTEM, SYSTEM_SCOPE_KEY, "1.0.0.1")
    assert await offer_version(services, device) == "1.0.0.1"
    await target(services, TargetScope.TENANT, tenant.tenant_id, "1.0.0.2")
    assert await offer_version(services, device) == "1.0.0.2"
    await target(services, TargetScope.GROUP, str(group), "1.0.0.3")
    assert await offer_version(services, device) == "1.0.0.3"
    await fleet.pin(device, "1.0.0.4")
    assert await offer_version(services, device) == "1.0.0.4"
    # Another model's and another tenant's targets never apply.
    other = await fleet.tenant("Other")
    await target(services, TargetScope.TENANT, other.tenant_id, "1.0.0.1")
    await target(services, TargetScope.SYSTEM, SYSTEM_SCOPE_KEY, "1.0.0.1", model="T48U")
    assert await offer_version(services, device) == "1.0.0.4"
    # Removing a level falls back to the one above.
    await target(services, TargetScope.GROUP, str(group), None)
    async with services.sessions() as session, session.begin():
        document = await session.get(SettingsDocument, 1)
        assert document is not None and document.scope is Scope.DEVICE
        document.data = {}
    assert await offer_version(services, device) == "1.0.0.2"


async def test_an_offer_carries_a_signed_url_for_the_device(
    services: Services, fleet: Fleet
) -> None:
    image = await fleet.image(version="108.87.0.1")
    tenant = await fleet.tenant()
    device = await fleet.device(tenant)
    await target(services, TargetScope.TENANT, tenant.tenant_id, "108.87.0.1")
    async with services.sessions() as session:
        offer = await services.firmware.offer(session, device, None, NOW)
    assert offer is not None
    base = services.settings.device_url + "/fw/"
    assert offer.url.startswith(base) and offer.url.endswith("/yealink-108.87.0.1.rom")
    token = offer.url.removeprefix(base).split("/")[0]
    assert len(token) == TOKEN_LENGTH and offer.directory_url == f"{base}{token}/"
    grant = services.firmware.tokens.verify(token, NOW.timestamp())
    assert grant is not None
    assert (grant.device_id, grant.mac, grant.image_id) == (device.id, device.mac, image.id)
    assert offer.cache_key[:2] == (image.id, "108.87.0.1")


async def test_a_target_without_an_image_offers_nothing_and_says_why(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version="2.0.0.1")
    tenant = await fleet.tenant()
    device = await fleet.device(tenant)
    await fleet.pin(device, "9.9.9.9")  # a pin may name anything
    assert await offer_version(services, device) is None
    async with services.sessions() as session, session.begin():
        session.add(
            SettingsDocument(
                scope=Scope.TENANT, scope_key=tenant.tenant_id, data={"firmware": {"version": "1"}}
            )
        )
    async with services.sessions() as session:
        tenant_document = await session.get(SettingsDocument, 2)
        device_document = await session.get(SettingsDocument, 1)
        documents = (None, tenant_document, None, None, device_document)
        explained = await explain(session, device, documents, NOW)
    assert explained.selection is not None
    assert (explained.selection.source, explained.selection.image) == (FirmwareSource.PIN, None)
    assert any("tenant settings pins nothing" in problem for problem in explained.problems)
    assert any("no image of yealink T46U 9.9.9.9" in problem for problem in explained.problems)


async def test_a_rollout_offers_inside_its_window_until_the_device_starts(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version="1.0.0.1")
    await fleet.image(version="2.0.0.1")
    tenant = await fleet.tenant()
    device = await fleet.device(tenant)
    await target(services, TargetScope.TENANT, tenant.tenant_id, "1.0.0.1")
    night = Window(dt.time(22, 0), dt.time(5, 0), "UTC")
    async with services.sessions() as session, session.begin():
        await create_rollout(
            session,
            RolloutRequest(
                name="night",
                targets=(TargetSpec("yealink", "T46U", "2.0.0.1"),),
                waves=(WavePlan(100),),
                failure_threshold_percent=10,
                wave_timeout=dt.timedelta(hours=12),
                tenant_id=tenant.tenant_id,
            ),
            created_by=None,
            now=NOW.replace(hour=23),
        )
    async with services.sessions() as session, session.begin():
        rollout = await session.get(Rollout, 1)
        assert rollout is not None
        rollout.window = night.to_json()

    async def version_at(hour: int) -> str | None:
        async with services.sessions() as session:
            offer = await services.firmware.offer(session, device, None, NOW.replace(hour=hour))
        return offer.version if offer else None

    assert await version_at(23) == "2.0.0.1"
    assert await version_at(12) == "1.0.0.1"  # outside the window: its usual target
    async with services.sessions() as session, session.begin():
        await record_downloads(session, [device.id], NOW)
    assert await version_at(12) == "2.0.0.1"  # it started: it keeps the image's URL


def test_only_a_version_in_the_device_document_is_a_pin() -> None:
    assert device_pin(None) is None
    assert device_pin(SettingsDocument(data={})) is None
    assert device_pin(SettingsDocument(data={"firmware": None})) is None
    assert device_pin(SettingsDocument(data={"firmware": {"version": "1.2"}})) == "1.2"
