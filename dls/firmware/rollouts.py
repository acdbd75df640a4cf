"""Rollouts in the database: create one, pause, resume or abort it, and advance it.

The engine (``dls.firmware.engine``) decides; this module reads the facts it decides on
and applies its decisions, always in the caller's transaction. Advancing changes the
rollout row (``updated_at``), whose version counter makes a second instance that decided
on the same facts fail its commit (``StaleDataError``) rather than apply twice; on
PostgreSQL the driver also skips rows another instance holds (``FOR UPDATE SKIP LOCKED``).

Scope. An operator rollout takes the named models' devices across tenants (or the listed
tenants), except devices whose tenant or group set a target of their own for the model;
a tenant rollout takes its own devices (or one group's), except devices whose group has
its own target when the rollout is tenant-wide. Everywhere excluded: retired devices,
devices pinned by their own ``firmware.version``, devices in another active rollout, and
devices already reporting the version. The set is fixed when the rollout is created.

On completion the version becomes the target at the rollout's level (operator default,
each listed tenant, the tenant, or the group), so devices added later get it too; a
rollout of listed devices only pins the version on the devices that installed it instead.
Abort is a rollback: the rollout's version is no longer offered, and devices follow their
targets again.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from dls import audit
from dls.devices.models import Device, DeviceStatus, Scope, SettingsDocument
from dls.errors import DomainError
from dls.firmware.catalog import model_key
from dls.firmware.delivery import device_pin
from dls.firmware.engine import (
    ACTIVE_STATUSES,
    OPEN_STATES,
    Complete,
    Decision,
    DeviceState,
    FinishWave,
    Halt,
    ReleaseWave,
    RolloutFacts,
    RolloutStatus,
    TimeOut,
    WaveFacts,
    WavePlan,
    WaveStatus,
    Window,
    decide,
    plan_waves,
)
from dls.firmware.models import (
    FirmwareImageModel,
    FirmwareTarget,
    Rollout,
    RolloutDevice,
    RolloutWave,
    TargetScope,
)
from dls.firmware.targets import SYSTEM_SCOPE_KEY, set_target
from dls.firmware.versions import same_version, version_key

__all__ = [
    "MAX_WAVES",
    "TIMEOUT_DETAIL",
    "RolloutRequest",
    "TargetSpec",
    "abort",
    "advance",
    "create_rollout",
    "pause",
    "resume",
    "wave_counts",
]

MAX_WAVES = 20
CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit
TIMEOUT_DETAIL = "no report of the target version within the wave timeout"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    vendor: str
    model: str  # validated model name
    version: str


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    name: str
    targets: tuple[TargetSpec, ...]
    waves: tuple[WavePlan, ...]
    failure_threshold_percent: int
    wave_timeout: dt.timedelta
    soak: dt.timedelta = dt.timedelta(0)
    window: Window | None = None
    tenant_id: str | None = None  # None: an operator rollout
    tenant_ids: tuple[str, ...] | None = None  # operator rollouts: only these tenants
    group_id: int | None = None  # tenant rollouts: only this group


@dataclass(slots=True)
class _Candidate:
    id: int
    tenant_id: str
    group_id: int | None
    target: TargetSpec
    firmware_version: str | None


@dataclass(slots=True)
class _Scope:
    eligible: list[_Candidate] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    why: dict[int, str] = field(default_factory=dict)  # excluded device -> reason


async def create_rollout(
    session: AsyncSession, request: RolloutRequest, *, created_by: int | None, now: dt.datetime
) -> Rollout:
    """Validate, fix the device set, plan the waves and release the first one."""
    _check_waves(request.waves)
    await _check_images(session, request.targets)
    scope = await _scope(session, request)
    by_id = {candidate.id: candidate for candidate in scope.eligible}
    for plan in request.waves:
        for device_id in plan.devices:
            if device_id not in by_id:
                reason = scope.why.get(device_id, "not in the rollout's scope")
                raise DomainError("waves", f"device {device_id}: {reason}")
    if not scope.eligible:
        raise DomainError("targets", "no device in scope needs these versions")
    rollout = Rollout(
        name=request.name,
        tenant_id=request.tenant_id,
        group_id=request.group_id,
        tenant_ids=list(request.tenant_ids) if request.tenant_ids is not None else None,
        targets=[
            {"vendor": t.vendor, "model": t.model, "version": t.version} for t in request.targets
        ],
        status=RolloutStatus.RUNNING,
        failure_threshold_percent=request.failure_threshold_percent,
        wave_timeout_seconds=int(request.wave_timeout.total_seconds()),
        soak_seconds=int(request.soak.total_seconds()),
        window=request.window.to_json() if request.window else None,
        excluded=dict(scope.excluded),
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(rollout)
    await session.flush()
    waves = plan_waves(list(by_id), request.waves, seed=f"rollout-{rollout.id}")
    for index, (plan, members) in enumerate(zip(request.waves, waves, strict=True)):
        session.add(
            RolloutWave(
                rollout_id=rollout.id,
                wave=index,
                percent=plan.percent,
                size=len(members),
                status=WaveStatus.PENDING,
            )
        )
    rows = [
        {
            "rollout_id": rollout.id,
            "device_id": device_id,
            "wave": index,
            "vendor": by_id[device_id].target.vendor,
            "model": by_id[device_id].target.model,
            "version": by_id[device_id].target.version,
            "version_key": version_key(by_id[device_id].target.version),
            "from_version": by_id[device_id].firmware_version,
            "state": DeviceState.PENDING,
            "updated_at": now,
        }
        for index, members in enumerate(waves)
        for device_id in members
    ]
    await session.flush()
    for start in range(0, len(rows), CHUNK):
        await session.execute(insert(RolloutDevice), rows[start : start + CHUNK])
    await advance(session, rollout, now)
    return rollout


def _check_waves(plans: Sequence[WavePlan]) -> None:
    if not plans or len(plans) > MAX_WAVES:
        raise DomainError("waves", f"1 to {MAX_WAVES} waves")
    percents = [plan.percent for plan in plans if plan.percent is not None]
    if any(not 1 <= percent <= 100 for percent in percents):
        raise DomainError("waves", "a percentage is 1 to 100")
    if percents != sorted(set(percents)):
        raise DomainError("waves", "percentages are cumulative: each larger than the one before")
    if percents and percents[-1] != 100:
        raise DomainError("waves", "the last percentage wave must be 100")
    explicit = [device for plan in plans for device in plan.devices]
    if len(explicit) != len(set(explicit)):
        raise DomainError("waves", "a device is listed in two waves")
    if any(plan.percent is None and not plan.devices for plan in plans):
        raise DomainError("waves", "each wave names a percentage or devices")


async def _check_images(session: AsyncSession, targets: Sequence[TargetSpec]) -> None:
    if not targets:
        raise DomainError("targets", "name at least one model and version")
    seen = set()
    for target in targets:
        key = (target.vendor, model_key(target.model))
        if key in seen:
            raise DomainError("targets", f"{target.vendor} {target.model} is named twice")
        seen.add(key)
        found = await session.get(
            FirmwareImageModel, (target.vendor, key[1], version_key(target.version))
        )
        if found is None:
            raise DomainError(
                "targets",
                f"no image of {target.vendor} {target.model} {target.version} is imported",
            )


async def _scope(session: AsyncSession, request: RolloutRequest) -> _Scope:
    wanted = {(t.vendor, model_key(t.model)): t for t in request.targets}
    statement = select(
        Device.id, Device.tenant_id, Device.group_id, Device.vendor, Device.model,
        Device.firmware_version,
    ).where(
        Device.status != DeviceStatus.RETIRED,
        Device.vendor.in_({t.vendor for t in request.targets}),
    )  # fmt: skip
    if request.tenant_id is not None:
        statement = statement.where(Device.tenant_id == request.tenant_id)
    if request.tenant_ids is not None:
        statement = statement.where(Device.tenant_id.in_(request.tenant_ids))
    if request.group_id is not None:
        statement = statement.where(Device.group_id == request.group_id)
    candidates = [
        _Candidate(row.id, row.tenant_id, row.group_id, target, row.firmware_version)
        for row in await session.execute(statement.order_by(Device.id))
        if (target := wanted.get((row.vendor, model_key(row.model)))) is not None
    ]
    scope = _Scope()
    pinned = await _pinned(session, [c.id for c in candidates])
    busy = await _in_active_rollouts(session, [c.id for c in candidates])
    own_targets = await _more_specific_targets(session, request, list(wanted))
    for candidate in candidates:
        reason = None
        if candidate.id in pinned:
            reason = "pinned by its own firmware.version setting"
        elif candidate.id in busy:
            reason = "in another active rollout"
        elif _has_own_target(candidate, own_targets):
            reason = "its tenant or group sets its own target for the model"
        elif same_version(candidate.firmware_version, candidate.target.version):
            reason = "already reports the version"
        if reason is None:
            scope.eligible.append(candidate)
        else:
            scope.why[candidate.id] = reason
            scope.excluded[reason] += 1
    return scope


async def _pinned(session: AsyncSession, device_ids: Sequence[int]) -> set[int]:
    pinned = set()
    for chunk in _chunks(device_ids):
        documents = await session.scalars(
            select(SettingsDocument).where(
                SettingsDocument.scope == Scope.DEVICE,
                SettingsDocument.scope_key.in_([str(device_id) for device_id in chunk]),
            )
        )
        pinned.update(int(doc.scope_key) for doc in documents if device_pin(doc) is not None)
    return pinned


async def _in_active_rollouts(session: AsyncSession, device_ids: Sequence[int]) -> set[int]:
    busy: set[int] = set()
    for chunk in _chunks(device_ids):
        busy.update(
            await session.scalars(
                select(RolloutDevice.device_id)
                .join(Rollout, Rollout.id == RolloutDevice.rollout_id)
                .where(RolloutDevice.device_id.in_(chunk), Rollout.status.in_(ACTIVE_STATUSES))
            )
        )
    return busy


async def _more_specific_targets(
    session: AsyncSession, request: RolloutRequest, models: Sequence[tuple[str, str]]
) -> set[tuple[TargetScope, str, str, str]]:
    """Targets below the rollout's level: (scope, scope key, vendor, model key)."""
    if request.group_id is not None:
        return set()
    scopes = [TargetScope.GROUP] if request.tenant_id is not None else list(TargetScope)[1:]
    rows = await session.execute(
        select(
            FirmwareTarget.scope,
            FirmwareTarget.scope_key,
            FirmwareTarget.vendor,
            FirmwareTarget.model_key,
        ).where(
            FirmwareTarget.scope.in_(scopes),
            FirmwareTarget.vendor.in_({vendor for vendor, _ in models}),
            FirmwareTarget.model_key.in_({key for _, key in models}),
        )
    )
    return {(row.scope, row.scope_key, row.vendor, row.model_key) for row in rows}


def _has_own_target(candidate: _Candidate, targets: set[tuple[TargetScope, str, str, str]]) -> bool:
    vendor, key = candidate.target.vendor, model_key(candidate.target.model)
    return (TargetScope.TENANT, candidate.tenant_id, vendor, key) in targets or (
        candidate.group_id is not None
        and (TargetScope.GROUP, str(candidate.group_id), vendor, key) in targets
    )


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# --- advancing ------------------------------------------------------------------------------


async def wave_counts(session: AsyncSession, rollout_id: int) -> dict[int, Counter[DeviceState]]:
    """Devices per state, per wave."""
    counts: dict[int, Counter[DeviceState]] = {}
    rows = await session.execute(
        select(RolloutDevice.wave, RolloutDevice.state, func.count())
        .where(RolloutDevice.rollout_id == rollout_id)
        .group_by(RolloutDevice.wave, RolloutDevice.state)
    )
    for wave, state, count in rows:
        counts.setdefault(wave, Counter())[DeviceState(state)] += count
    return counts


async def _waves(session: AsyncSession, rollout_id: int) -> list[RolloutWave]:
    return list(
        await session.scalars(
            select(RolloutWave)
            .where(RolloutWave.rollout_id == rollout_id)
            .order_by(RolloutWave.wave)
        )
    )


async def advance(
    session: AsyncSession, rollout: Rollout, now: dt.datetime
) -> tuple[Decision, ...]:
    """Decide on the rollout's current facts and apply the decisions; what was decided."""
    waves = await _waves(session, rollout.id)
    counts = await wave_counts(session, rollout.id)
    facts = RolloutFacts(
        status=rollout.status,
        waves=tuple(
            WaveFacts(
                index=wave.wave,
                size=wave.size,
                status=wave.status,
                installed=counts.get(wave.wave, Counter())[DeviceState.INSTALLED],
                failed=counts.get(wave.wave, Counter())[DeviceState.FAILED],
                deadline_at=wave.deadline_at,
                finished_at=wave.finished_at,
            )
            for wave in waves
        ),
        failure_threshold_percent=rollout.failure_threshold_percent,
        wave_timeout=dt.timedelta(seconds=rollout.wave_timeout_seconds),
        soak=dt.timedelta(seconds=rollout.soak_seconds),
        window=Window.from_json(rollout.window),
        accepted_failures=rollout.accepted_failures,
    )
    decisions = decide(facts, now)
    for decision in decisions:
        await _apply(session, rollout, waves, decision, now)
    if decisions:
        rollout.updated_at = now
        # Always an UPDATE of the row, even when the time did not change: it is what checks
        # the version counter, so decisions taken on stale facts are rolled back.
        flag_modified(rollout, "updated_at")
        await session.flush()
    return decisions


async def _apply(
    session: AsyncSession,
    rollout: Rollout,
    waves: Sequence[RolloutWave],
    decision: Decision,
    now: dt.datetime,
) -> None:
    match decision:
        case TimeOut(wave=index):
            await session.execute(
                update(RolloutDevice)
                .where(
                    RolloutDevice.rollout_id == rollout.id,
                    RolloutDevice.wave == index,
                    RolloutDevice.state.in_(OPEN_STATES),
                )
                .values(
                    state=DeviceState.FAILED,
                    detail=TIMEOUT_DETAIL,
                    finished_at=now,
                    updated_at=now,
                )
            )
        case Halt(reason=reason):
            rollout.status = RolloutStatus.HALTED
            rollout.halted_reason = reason[:255]
            _audit(session, rollout, "firmware.rollout.halt", {"reason": reason})
        case FinishWave(wave=index):
            waves[index].status = WaveStatus.DONE
            waves[index].finished_at = now
        case ReleaseWave(wave=index, deadline_at=deadline):
            waves[index].status = WaveStatus.ACTIVE
            waves[index].released_at = now
            waves[index].deadline_at = deadline
            await session.execute(
                update(RolloutDevice)
                .where(
                    RolloutDevice.rollout_id == rollout.id,
                    RolloutDevice.wave == index,
                    RolloutDevice.state == DeviceState.PENDING,
                )
                .values(state=DeviceState.OFFERED, offered_at=now, updated_at=now)
            )
        case Complete():
            rollout.status = RolloutStatus.COMPLETED
            rollout.finished_at = now
            if any(wave.percent is not None for wave in waves):
                await _adopt_targets(session, rollout, now)
            else:
                await _pin_installed(session, rollout, now)
            _audit(session, rollout, "firmware.rollout.complete", {"targets": rollout.targets})


async def _adopt_targets(session: AsyncSession, rollout: Rollout, now: dt.datetime) -> None:
    """The rolled-out versions become the targets at the rollout's level.

    An operator rollout limited to some tenants sets each of those tenants' target, where
    the tenant has none of its own, rather than the default of every tenant: a version
    staged for three customers must not reach the fourth unstaged.
    """
    if rollout.group_id is not None:
        levels = [(TargetScope.GROUP, str(rollout.group_id))]
    elif rollout.tenant_id is not None:
        levels = [(TargetScope.TENANT, rollout.tenant_id)]
    elif rollout.tenant_ids is not None:
        levels = [(TargetScope.TENANT, tenant_id) for tenant_id in rollout.tenant_ids]
    else:
        levels = [(TargetScope.SYSTEM, SYSTEM_SCOPE_KEY)]
    for target in rollout.targets:
        key = model_key(target["model"])
        own = set()
        if rollout.tenant_id is None and rollout.tenant_ids is not None:
            own = set(
                await session.scalars(
                    select(FirmwareTarget.scope_key).where(
                        FirmwareTarget.scope == TargetScope.TENANT,
                        FirmwareTarget.vendor == target["vendor"],
                        FirmwareTarget.model_key == key,
                        FirmwareTarget.scope_key.in_(rollout.tenant_ids),
                    )
                )
            )
        for scope, scope_key in levels:
            if scope_key in own:
                continue  # the tenant chose its own version for the model
            await set_target(
                session,
                scope,
                scope_key,
                target["vendor"],
                target["model"],
                target["version"],
                updated_by=rollout.created_by,
                now=now,
            )


async def _pin_installed(session: AsyncSession, rollout: Rollout, now: dt.datetime) -> None:
    """A rollout of listed devices only: the other devices of the level were never staged,
    so the version is pinned on the devices that installed it rather than made the level's
    target (which would reach the others unstaged)."""
    members = await session.scalars(
        select(RolloutDevice).where(
            RolloutDevice.rollout_id == rollout.id,
            RolloutDevice.state == DeviceState.INSTALLED,
        )
    )
    for member in members:
        key = str(member.device_id)
        document = await session.scalar(
            select(SettingsDocument).where(
                SettingsDocument.scope == Scope.DEVICE, SettingsDocument.scope_key == key
            )
        )
        if document is None:
            document = SettingsDocument(scope=Scope.DEVICE, scope_key=key, data={}, revision=0)
            session.add(document)
        document.data = {**(document.data or {}), "firmware": {"version": member.version}}
        document.revision += 1
        document.updated_at = now
    await session.flush()


def _audit(
    session: AsyncSession, rollout: Rollout, action: str, changes: dict[str, object]
) -> None:
    """Entries the engine writes on its own: no acting user."""
    audit.record(
        session,
        actor_user_id=None,
        actor_tenant_id=None,
        target_tenant_id=rollout.tenant_id,
        via=audit.Via.OPERATOR,
        action=action,
        object_type="firmware_rollout",
        object_id=rollout.id,
        changes=changes,
    )


# --- admin controls -------------------------------------------------------------------------


def _check_not_finished(rollout: Rollout) -> None:
    if rollout.status in (RolloutStatus.COMPLETED, RolloutStatus.ABORTED):
        raise DomainError("status", f"the rollout is {rollout.status}", conflict=True)


async def pause(session: AsyncSession, rollout: Rollout, now: dt.datetime) -> dict[str, object]:
    """Release nothing more; devices already released keep their offer. Idempotent."""
    _check_not_finished(rollout)
    if rollout.status is RolloutStatus.PAUSED:
        return {}
    before = rollout.status
    rollout.status = RolloutStatus.PAUSED
    rollout.updated_at = now
    await session.flush()
    return {"status": [before, rollout.status]}


async def resume(
    session: AsyncSession, rollout: Rollout, now: dt.datetime, *, retry_failed: bool
) -> dict[str, object]:
    """Run again. The active wave gets a fresh timeout; with ``retry_failed`` its failed
    devices are offered again, otherwise they count as accepted failures. Failures of
    earlier waves are accepted either way (their waves are done)."""
    _check_not_finished(rollout)
    if rollout.status is RolloutStatus.RUNNING:
        return {}
    before = rollout.status
    waves = await _waves(session, rollout.id)
    counts = await wave_counts(session, rollout.id)
    released = [wave for wave in waves if wave.status is not WaveStatus.PENDING]
    failed = sum(counts.get(wave.wave, Counter())[DeviceState.FAILED] for wave in released)
    retried = 0
    if released:
        active = released[-1]
        active.deadline_at = now + dt.timedelta(seconds=rollout.wave_timeout_seconds)
        if retry_failed:
            retried = counts.get(active.wave, Counter())[DeviceState.FAILED]
            await session.execute(
                update(RolloutDevice)
                .where(
                    RolloutDevice.rollout_id == rollout.id,
                    RolloutDevice.wave == active.wave,
                    RolloutDevice.state == DeviceState.FAILED,
                )
                .values(
                    state=DeviceState.OFFERED,
                    detail=None,
                    finished_at=None,
                    offered_at=now,
                    updated_at=now,
                )
            )
            if retried:
                active.status = WaveStatus.ACTIVE
                active.finished_at = None
    rollout.accepted_failures = failed - retried
    rollout.status = RolloutStatus.RUNNING
    rollout.halted_reason = None
    rollout.updated_at = now
    await session.flush()
    await advance(session, rollout, now)
    return {
        "status": [before, RolloutStatus.RUNNING],
        "retried": retried,
        "accepted_failures": rollout.accepted_failures,
    }


async def abort(session: AsyncSession, rollout: Rollout, now: dt.datetime) -> dict[str, object]:
    """Stop offering the version: devices follow their targets again. Idempotent."""
    if rollout.status is RolloutStatus.ABORTED:
        return {}
    _check_not_finished(rollout)
    before = rollout.status
    rollout.status = RolloutStatus.ABORTED
    rollout.finished_at = now
    rollout.updated_at = now
    await session.flush()
    return {"status": [before, rollout.status]}
