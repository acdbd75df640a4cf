"""Rollouts against the database: scope, waves advancing on reports, halting, controls,
and two instances advancing one rollout."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Callable

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from dls.db.engine import is_sqlite
from dls.devices.facts import device_facts
from dls.devices.models import Device, DeviceStatus
from dls.errors import DomainError
from dls.firmware.driver import RolloutDriver
from dls.firmware.engine import (
    DeviceState,
    RolloutStatus,
    WavePlan,
    WaveStatus,
)
from dls.firmware.models import FirmwareTarget, Rollout, RolloutDevice, RolloutWave, TargetScope
from dls.firmware.progress import record_failure
from dls.firmware.rollouts import (
    TIMEOUT_DETAIL,
    RolloutRequest,
    TargetSpec,
    abort,
    advance,
    create_rollout,
    pause,
    resume,
)
from dls.firmware.targets import set_target
from dls.provisioning.ledger import Fetch
from dls.services import Services
from dls.tenancy.models import Tenant
from tests.firmware.conftest import NOW, Fleet

pytestmark = pytest.mark.db

TARGET = "108.87.0.1"
RUNNING = "108.86.0.90"


def request(tenant: Tenant | None, *waves: WavePlan, **more: object) -> RolloutRequest:
    values: dict[str, object] = {
        "name": "test",
        "targets": (TargetSpec("yealink", "T46U", TARGET),),
        "waves": waves or (WavePlan(100),),
        "failure_threshold_percent": 10,
        "wave_timeout": dt.timedelta(hours=1),
        "tenant_id": tenant.tenant_id if tenant else None,
        **more,
    }
    return RolloutRequest(**values)  # type: ignore[arg-type]


async def create(
    services: Services, rollout_request: RolloutRequest, now: dt.datetime = NOW
) -> int:
    async with services.sessions() as session, session.begin():
        rollout = await create_rollout(session, rollout_request, created_by=None, now=now)
        return rollout.id


async def states(services: Services, rollout_id: int) -> dict[int, DeviceState]:
    async with services.sessions() as session:
        rows = await session.scalars(
            select(RolloutDevice).where(RolloutDevice.rollout_id == rollout_id)
        )
        return {row.device_id: row.state for row in rows}


async def status(services: Services, rollout_id: int) -> RolloutStatus:
    async with services.sessions() as session:
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        return rollout.status


async def report(services: Services, device: Device, version: str) -> None:
    """A fetch reaching the ledger, as the device path records it."""
    fetch = Fetch(device.id, "x.cfg", "hash", "rev", NOW, None, None, version)
    await services.firmware.on_fetches([fetch])


async def test_the_scope_leaves_out_what_must_not_be_touched(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    group = await fleet.group(tenant)
    eligible = [await fleet.device(tenant) for _ in range(3)]
    pinned = await fleet.device(tenant)
    await fleet.pin(pinned, RUNNING)
    await fleet.device(tenant, status=DeviceStatus.RETIRED)
    await fleet.device(tenant, firmware=TARGET)
    await fleet.device(tenant, model="T48U")
    grouped = await fleet.device(tenant, group_id=group)
    async with services.sessions() as session, session.begin():
        await set_target(
            session, TargetScope.GROUP, str(group), "yealink", "T46U", TARGET,
            updated_by=None, now=NOW,
        )  # fmt: skip
    busy = await fleet.device(tenant)
    await create(services, request(tenant, WavePlan(devices=(busy.id,))))
    elsewhere = await fleet.device(await fleet.tenant("Elsewhere"))

    rollout_id = await create(services, request(tenant))
    assert set(await states(services, rollout_id)) == {device.id for device in eligible}
    async with services.sessions() as session:
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        assert rollout.excluded == {
            "pinned by its own firmware.version setting": 1,
            "already reports the version": 1,
            "its tenant or group sets its own target for the model": 1,
            "in another active rollout": 1,
        }
    # The operator's rollout across tenants: the other tenant's device, not the grouped one.
    operator_id = await create(services, request(None))
    assert elsewhere.id in await states(services, operator_id)
    assert grouped.id not in await states(services, operator_id)


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        ((WavePlan(10), WavePlan(50)), "must be 100"),
        ((WavePlan(50), WavePlan(10), WavePlan(100)), "cumulative"),
        ((WavePlan(devices=(1,)), WavePlan(devices=(1,))), "two waves"),
        ((), "1 to 20"),
    ],
)
async def test_waves_are_checked(
    services: Services, fleet: Fleet, waves: tuple[WavePlan, ...], message: str
) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    await fleet.device(tenant)
    plain = request(tenant)
    with pytest.raises(DomainError, match=message):
        await create(services, dataclasses.replace(plain, waves=waves))


async def test_what_cannot_be_rolled_out_is_refused(services: Services, fleet: Fleet) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant)
    with pytest.raises(DomainError, match="no image of yealink T46U"):
        await create(services, request(tenant))
    await fleet.image(version=TARGET)
    other = await fleet.device(await fleet.tenant("Other"))
    with pytest.raises(DomainError, match=f"device {other.id}: not in the rollout's scope"):
        await create(services, request(tenant, WavePlan(devices=(other.id,))))
    await fleet.pin(device, RUNNING)
    with pytest.raises(DomainError, match="no device in scope"):
        await create(services, request(tenant))


async def test_waves_follow_the_reports_and_the_version_becomes_the_target(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    devices = [await fleet.device(tenant) for _ in range(5)]
    canary = devices[0]
    rollout_id = await create(
        services, request(tenant, WavePlan(devices=(canary.id,)), WavePlan(50), WavePlan(100))
    )
    driver = RolloutDriver(services.sessions, interval=60)
    first = await states(services, rollout_id)
    assert first[canary.id] is DeviceState.OFFERED
    assert sum(state is DeviceState.PENDING for state in first.values()) == 4

    await report(services, canary, RUNNING)  # before installing: still the old version
    assert (await states(services, rollout_id))[canary.id] is DeviceState.OFFERED
    await driver.step(NOW)
    assert sum(s is DeviceState.OFFERED for s in (await states(services, rollout_id)).values()) == 1
    await report(services, canary, TARGET)
    assert (await states(services, rollout_id))[canary.id] is DeviceState.INSTALLED
    decisions = await driver.step(NOW)
    assert [type(d).__name__ for d in decisions[rollout_id]] == ["FinishWave", "ReleaseWave"]

    for _ in range(2):
        for device in devices:
            if (await states(services, rollout_id))[device.id] is DeviceState.OFFERED:
                await report(services, device, TARGET)
        await driver.step(NOW)
    assert await status(services, rollout_id) is RolloutStatus.COMPLETED
    assert set((await states(services, rollout_id)).values()) == {DeviceState.INSTALLED}
    async with services.sessions() as session:
        target = await session.scalar(
            select(FirmwareTarget).where(FirmwareTarget.scope_key == tenant.tenant_id)
        )
        assert target is not None and (target.scope, target.version) == (TargetScope.TENANT, TARGET)
        waves = (await session.scalars(select(RolloutWave).order_by(RolloutWave.wave))).all()
        assert [wave.status for wave in waves] == [WaveStatus.DONE] * 3
        assert [wave.size for wave in waves] == [1, 2, 2]


async def test_only_the_fetches_of_managed_devices_are_looked_up(
    services: Services, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's observer trusts DeviceFacts.firmware_managed, which the poll that
    fetched read: a device a rollout has offered an image says so, and fetches of devices
    that do not say so cost no transaction."""
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    offered, pending = await fleet.device(tenant), await fleet.device(tenant)
    rollout_id = await create(
        services, request(tenant, WavePlan(devices=(offered.id,)), WavePlan(100))
    )
    assert (await states(services, rollout_id))[offered.id] is DeviceState.OFFERED
    facts = await device_facts(services.reads, offered.mac)
    assert facts is not None and facts.firmware_managed
    real_sessions, opened = services.firmware._sessions, []

    def counted() -> object:
        opened.append(1)
        return real_sessions()

    monkeypatch.setattr(services.firmware, "_sessions", counted)

    quiet = Fetch(pending.id, "x.cfg", "h", "r", NOW, None, None, RUNNING, firmware_managed=False)
    await services.firmware.on_fetches([quiet])
    assert opened == []
    installed = Fetch(
        offered.id, "x.cfg", "h", "r", NOW, None, None, TARGET, facts.firmware_managed
    )
    await services.firmware.on_fetches([quiet, installed])
    assert opened == [1]
    assert (await states(services, rollout_id))[offered.id] is DeviceState.INSTALLED


def meddled(services: Services, sessions: Callable[[], AsyncSession]) -> Callable[[], AsyncSession]:
    """``sessions`` whose sessions see another connection commit a write just before they
    flush theirs (the ledger and WPI commit many times a second under load)."""

    def make() -> AsyncSession:
        session = sessions()

        @event.listens_for(session.sync_session, "before_flush")
        def another_writer_commits(*_: object) -> None:
            other = sqlite3.connect(services.engine.url.database, timeout=0)
            with contextlib.suppress(sqlite3.OperationalError):  # the lock is taken: fine
                other.execute("UPDATE tenants SET name = name || '.'")
                other.commit()
            other.close()

        return session

    return make


async def test_reports_and_rollouts_go_on_though_other_writers_commit_meanwhile(
    services: Services, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a transaction that read and then writes fails at once if another
    connection committed in between: the reports' and the driver's transactions take
    the write lock before they read."""
    if not is_sqlite(services.engine):
        pytest.skip("PostgreSQL transactions do not fail on a concurrent commit")
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    canary, other = await fleet.device(tenant), await fleet.device(tenant)
    rollout_id = await create(
        services, request(tenant, WavePlan(devices=(canary.id,)), WavePlan(100))
    )
    monkeypatch.setattr(services.firmware, "_sessions", meddled(services, services.sessions))
    await report(services, canary, TARGET)
    assert (await states(services, rollout_id))[canary.id] is DeviceState.INSTALLED
    driver = RolloutDriver(meddled(services, services.sessions), interval=60)
    decisions = await driver.step(NOW)
    assert [type(d).__name__ for d in decisions[rollout_id]] == ["FinishWave", "ReleaseWave"]
    assert (await states(services, rollout_id))[other.id] is DeviceState.OFFERED


async def test_failures_halt_and_an_admin_decides(services: Services, fleet: Fleet) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    devices = [await fleet.device(tenant) for _ in range(4)]
    rollout_id = await create(
        services, request(tenant, WavePlan(devices=(devices[0].id,)), WavePlan(100))
    )
    driver = RolloutDriver(services.sessions, interval=60)
    # No report within the hour: the canary fails and the rollout halts.
    await driver.step(NOW + dt.timedelta(minutes=59))
    assert await status(services, rollout_id) is RolloutStatus.RUNNING
    await driver.step(NOW + dt.timedelta(hours=1))
    assert await status(services, rollout_id) is RolloutStatus.HALTED
    async with services.sessions() as session:
        member = await session.get(RolloutDevice, (rollout_id, devices[0].id))
        assert member is not None and member.detail == TIMEOUT_DETAIL
    # Halted: nothing moves by itself.
    assert await driver.step(NOW + dt.timedelta(hours=5)) == {}

    later = NOW + dt.timedelta(hours=2)
    async with services.sessions() as session, session.begin():
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        changes = await resume(session, rollout, later, retry_failed=True)
    assert changes["retried"] == 1
    assert (await states(services, rollout_id))[devices[0].id] is DeviceState.OFFERED
    # This time it reports another version: failed at once, halted again.
    await report(services, devices[0], "108.86.0.99")
    async with services.sessions() as session:
        member = await session.get(RolloutDevice, (rollout_id, devices[0].id))
        assert member is not None and member.state is DeviceState.FAILED
        assert member.detail == f"reported version 108.86.0.99, not {TARGET}"
    await driver.step(later)
    assert await status(services, rollout_id) is RolloutStatus.HALTED
    # Accepting the failure lets the next wave go.
    async with services.sessions() as session, session.begin():
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        await resume(session, rollout, later, retry_failed=False)
        assert rollout.accepted_failures == 1
    released = await states(services, rollout_id)
    assert [released[device.id] for device in devices[1:]] == [DeviceState.OFFERED] * 3
    # A delivery channel reports a failure; with 1 of 3 counted the rollout halts.
    async with services.sessions() as session, session.begin():
        assert await record_failure(session, devices[1].id, "job failed", later)
    await driver.step(later)
    assert await status(services, rollout_id) is RolloutStatus.HALTED
    # Pause and abort; a finished rollout takes no more controls.
    async with services.sessions() as session, session.begin():
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        assert await pause(session, rollout, later) == {"status": ["halted", "paused"]}
        assert await pause(session, rollout, later) == {}
        assert (await abort(session, rollout, later))["status"] == ["paused", "aborted"]
        assert await abort(session, rollout, later) == {}
        with pytest.raises(DomainError, match="aborted"):
            await resume(session, rollout, later, retry_failed=True)


async def test_two_instances_deciding_on_the_same_facts_apply_once(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    devices = [await fleet.device(tenant) for _ in range(3)]
    rollout_id = await create(
        services, request(tenant, WavePlan(devices=(devices[0].id,)), WavePlan(100))
    )
    await report(services, devices[0], TARGET)
    # Instance A reads the running rollout; meanwhile an admin pauses it and commits. A's
    # decision to release the next wave rests on a status that is no longer true.
    async with services.sessions() as first, first.begin():
        stale = await first.get(Rollout, rollout_id)
        assert stale is not None and stale.status is RolloutStatus.RUNNING
        async with services.sessions() as second, second.begin():
            fresh = await second.get(Rollout, rollout_id)
            assert fresh is not None
            await pause(second, fresh, NOW)
        # PostgreSQL: the version counter matches no row. SQLite: the first transaction's
        # snapshot is older than the committed write, so it may not write at all.
        with pytest.raises((StaleDataError, OperationalError)):
            await advance(first, stale, NOW)
        await first.rollback()
    assert await status(services, rollout_id) is RolloutStatus.PAUSED
    assert (await states(services, rollout_id))[devices[1].id] is DeviceState.PENDING
    async with services.sessions() as session, session.begin():
        rollout = await session.get(Rollout, rollout_id)
        assert rollout is not None
        await resume(session, rollout, NOW, retry_failed=True)  # releases the next wave
    # Two drivers stepping at once: the wave is released once, nothing fails.
    await report(services, devices[1], TARGET)
    await report(services, devices[2], TARGET)
    drivers = [RolloutDriver(services.sessions, interval=60) for _ in range(2)]
    results = await asyncio.gather(*(driver.step(NOW) for driver in drivers))
    completions = [
        d
        for result in results
        for d in result.get(rollout_id, ())
        if type(d).__name__ == "Complete"
    ]
    assert len(completions) == 1
    assert await status(services, rollout_id) is RolloutStatus.COMPLETED


async def complete(services: Services, rollout_id: int, devices: list[Device]) -> None:
    """Every device installs as soon as it is offered, until the rollout completes."""
    driver = RolloutDriver(services.sessions, interval=60)
    for _ in range(10):
        current = await states(services, rollout_id)
        for device in devices:
            if current.get(device.id) is DeviceState.OFFERED:
                await report(services, device, TARGET)
        await driver.step(NOW)
        if await status(services, rollout_id) is RolloutStatus.COMPLETED:
            return
    raise AssertionError(await states(services, rollout_id))


async def test_a_rollout_of_listed_devices_pins_them_instead_of_setting_a_target(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version=TARGET)
    tenant = await fleet.tenant()
    listed = [await fleet.device(tenant) for _ in range(2)]
    bystander = await fleet.device(tenant)
    rollout_id = await create(
        services,
        request(tenant, WavePlan(devices=(listed[0].id,)), WavePlan(devices=(listed[1].id,))),
    )
    await complete(services, rollout_id, listed)
    async with services.sessions() as session:
        assert await session.scalar(select(FirmwareTarget)) is None
        for device in [*listed, bystander]:
            offer = await services.firmware.offer_for(
                session, await session.get(Device, device.id), NOW
            )
            expected = TARGET if device is not bystander else None
            assert (offer.version if offer else None) == expected
            assert (offer.selection.source.value if offer else None) == (
                "pin" if expected else None
            )


async def test_an_operator_rollout_for_some_tenants_sets_only_their_targets(
    services: Services, fleet: Fleet
) -> None:
    await fleet.image(version=TARGET)
    await fleet.image(version="108.86.0.1")
    first, second, third = [await fleet.tenant(name) for name in ("a", "b", "c")]
    async with services.sessions() as session, session.begin():
        await set_target(
            session, TargetScope.TENANT, second.tenant_id, "yealink", "T46U", "108.86.0.1",
            updated_by=None, now=NOW,
        )  # fmt: skip
    devices = [await fleet.device(tenant) for tenant in (first, second, third)]
    rollout_id = await create(
        services, request(None, WavePlan(100), tenant_ids=(first.tenant_id, second.tenant_id))
    )
    assert set(await states(services, rollout_id)) == {devices[0].id}
    await complete(services, rollout_id, devices)
    async with services.sessions() as session:
        targets = {
            (row.scope, row.scope_key): row.version
            for row in await session.scalars(select(FirmwareTarget))
        }
    assert targets == {
        (TargetScope.TENANT, first.tenant_id): TARGET,
        (TargetScope.TENANT, second.tenant_id): "108.86.0.1",  # its own choice stays
    }
