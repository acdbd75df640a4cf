"""Staged firmware rollouts: create, watch, pause, resume, abort.

The operator rolls versions out across tenants (``/firmware/rollouts``); a tenant's
admins, or its partner on its behalf, roll out to the tenant's own devices
(``/tenants/{id}/firmware/rollouts``). The operator reads every rollout under
``/firmware/rollouts/{id}``; a tenant sees only its own. The rules are in
``dls.firmware.engine`` and ``dls.firmware.rollouts``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from dls.api.access import owned, path_id, record, require, require_operator
from dls.api.common import api
from dls.api.firmware import Model, Vendor, Version
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import MAX_ROW_ID, ApiError, Call, RequestModel, RowId
from dls.devices.models import Device, DeviceGroup
from dls.firmware import rollouts
from dls.firmware.engine import DeviceState, RolloutStatus, WavePlan, WaveStatus, Window
from dls.firmware.models import Rollout, RolloutDevice, RolloutWave
from dls.tenancy.policy import Access

TAG = "firmware rollouts"
MAX_TARGETS = 50
MAX_EXPLICIT_DEVICES = 1000
Clock = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


# --- request bodies ---------------------------------------------------------------------------


class TargetIn(RequestModel):
    vendor: Vendor
    model: Model
    version: Version


class WaveIn(RequestModel):
    percent: int | None = Field(
        default=None, ge=1, le=100, description="Cumulative share of the devices in scope."
    )
    devices: list[RowId] | None = Field(
        default=None, min_length=1, max_length=MAX_EXPLICIT_DEVICES, description="Device ids."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> WaveIn:
        if (self.percent is None) == (self.devices is None):
            raise ValueError("give percent or devices")
        return self


class WindowIn(RequestModel):
    start: Clock = Field(description="Local time HH:MM a wave may start from.")
    end: Clock = Field(description="Local time HH:MM; earlier than start crosses midnight.")
    time_zone: str = Field(max_length=64, description="IANA zone, e.g. Europe/Berlin.")
    weekdays: list[int] = Field(
        default_factory=lambda: list(range(7)),
        min_length=1,
        max_length=7,
        description="Days the window starts on, 0 = Monday.",
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone") from None
        return value

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(not 0 <= day <= 6 for day in value):
            raise ValueError("0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    def window(self) -> Window:
        return Window(
            dt.time.fromisoformat(self.start),
            dt.time.fromisoformat(self.end),
            self.time_zone,
            frozenset(self.weekdays),
        )


class RolloutCreate(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    targets: list[TargetIn] = Field(
        min_length=1, max_length=MAX_TARGETS, description="The version per model."
    )
    waves: list[WaveIn] = Field(
        min_length=1,
        max_length=rollouts.MAX_WAVES,
        description="e.g. [{percent: 1}, {percent: 10}, {percent: 50}, {percent: 100}], or "
        "explicit device lists; percentages are cumulative and end at 100.",
    )
    failure_threshold_percent: int = Field(
        default=10, ge=0, le=100, description="Halt when more of the released devices fail."
    )
    wave_timeout_seconds: int = Field(
        default=24 * 3600,
        ge=1,
        le=30 * 24 * 3600,
        description="A device that has not reported the version this long after its wave "
        "was released counts as failed.",
    )
    soak_seconds: int = Field(
        default=0, ge=0, le=30 * 24 * 3600, description="Wait after a wave before the next."
    )
    window: WindowIn | None = Field(
        default=None, description="Maintenance window: waves start and offers go out in it."
    )


class OperatorRolloutCreate(RolloutCreate):
    tenant_ids: list[str] | None = Field(
        default=None, min_length=1, max_length=1000, description="Only these tenants."
    )


class TenantRolloutCreate(RolloutCreate):
    # Checked by owned(): any id no group of the tenant has, in range or not, is a 404.
    group_id: int | None = Field(default=None, description="Only this device group.")


class ResumeRequest(RequestModel):
    retry_failed: bool = Field(
        default=True,
        description="Offer the active wave's failed devices again; false accepts the "
        "failures so far (they no longer count against the threshold).",
    )


class RolloutDeviceQuery(PageQuery):
    state: DeviceState | None = None
    wave: int | None = Field(default=None, ge=0, le=MAX_ROW_ID)


class RolloutListQuery(PageQuery):
    status: RolloutStatus | None = None


# --- answers ----------------------------------------------------------------------------------


class TargetOut(BaseModel):
    vendor: str
    model: str
    version: str


class WindowOut(BaseModel):
    start: str
    end: str
    time_zone: str
    weekdays: list[int]


class WaveOut(BaseModel):
    wave: int
    percent: int | None
    size: int
    status: WaveStatus
    released_at: dt.datetime | None
    deadline_at: dt.datetime | None
    finished_at: dt.datetime | None
    devices: dict[DeviceState, int] = Field(description="Devices per state.")


class RolloutOut(BaseModel):
    id: int
    name: str
    tenant_id: str | None = Field(description="null: the operator's, across tenants.")
    group_id: int | None
    tenant_ids: list[str] | None
    targets: list[TargetOut]
    status: RolloutStatus
    halted_reason: str | None
    failure_threshold_percent: int
    wave_timeout_seconds: int
    soak_seconds: int
    window: WindowOut | None
    accepted_failures: int
    excluded: dict[str, int] = Field(description="Devices left out of scope, by reason.")
    devices: dict[DeviceState, int] = Field(description="All devices per state.")
    waves: list[WaveOut]
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class RolloutSummary(BaseModel):
    id: int
    name: str
    tenant_id: str | None
    status: RolloutStatus
    targets: list[TargetOut]
    created_at: dt.datetime
    finished_at: dt.datetime | None


class RolloutDeviceOut(BaseModel):
    device_id: int
    mac: str
    tenant_id: str
    wave: int
    vendor: str
    model: str
    version: str
    from_version: str | None
    reported_version: str | None
    state: DeviceState
    detail: str | None
    offered_at: dt.datetime | None
    download_started_at: dt.datetime | None
    finished_at: dt.datetime | None


def _zeros() -> dict[DeviceState, int]:
    return dict.fromkeys(DeviceState, 0)


async def rollout_out(call: Call, rollout: Rollout) -> RolloutOut:
    counts = await rollouts.wave_counts(call.session, rollout.id)
    waves = await call.session.scalars(
        select(RolloutWave).where(RolloutWave.rollout_id == rollout.id).order_by(RolloutWave.wave)
    )
    total: Counter[DeviceState] = Counter()
    for per_wave in counts.values():
        total.update(per_wave)
    return RolloutOut(
        id=rollout.id,
        name=rollout.name,
        tenant_id=rollout.tenant_id,
        group_id=rollout.group_id,
        tenant_ids=rollout.tenant_ids,
        targets=[TargetOut.model_validate(target) for target in rollout.targets],
        status=rollout.status,
        halted_reason=rollout.halted_reason,
        failure_threshold_percent=rollout.failure_threshold_percent,
        wave_timeout_seconds=rollout.wave_timeout_seconds,
        soak_seconds=rollout.soak_seconds,
        window=WindowOut.model_validate(rollout.window) if rollout.window else None,
        accepted_failures=rollout.accepted_failures,
        excluded=rollout.excluded,
        devices={**_zeros(), **total},
        waves=[
            WaveOut(
                wave=wave.wave,
                percent=wave.percent,
                size=wave.size,
                status=wave.status,
                released_at=wave.released_at,
                deadline_at=wave.deadline_at,
                finished_at=wave.finished_at,
                devices={**_zeros(), **counts.get(wave.wave, {})},
            )
            for wave in waves
        ],
        created_at=rollout.created_at,
        updated_at=rollout.updated_at,
        finished_at=rollout.finished_at,
    )


def _summary(rollout: Rollout) -> RolloutSummary:
    return RolloutSummary(
        id=rollout.id,
        name=rollout.name,
        tenant_id=rollout.tenant_id,
        status=rollout.status,
        targets=[TargetOut.model_validate(target) for target in rollout.targets],
        created_at=rollout.created_at,
        finished_at=rollout.finished_at,
    )


# --- shared handlers -------------------------------------------------------------------------


def _request(
    call: Call,
    body: RolloutCreate,
    *,
    tenant_id: str | None,
    tenant_ids: list[str] | None = None,
    group_id: int | None = None,
) -> rollouts.RolloutRequest:
    targets = []
    for target in body.targets:
        found = call.services.catalog.lookup(target.vendor, target.model)
        if found is None:
            raise ApiError.invalid(
                "targets", f"{target.vendor} {target.model} is not a validated model"
            )
        targets.append(rollouts.TargetSpec(target.vendor, found[1], target.version))
    return rollouts.RolloutRequest(
        name=body.name,
        targets=tuple(targets),
        waves=tuple(WavePlan(wave.percent, tuple(wave.devices or ())) for wave in body.waves),
        failure_threshold_percent=body.failure_threshold_percent,
        wave_timeout=dt.timedelta(seconds=body.wave_timeout_seconds),
        soak=dt.timedelta(seconds=body.soak_seconds),
        window=body.window.window() if body.window else None,
        tenant_id=tenant_id,
        tenant_ids=tuple(tenant_ids) if tenant_ids is not None else None,
        group_id=group_id,
    )


def _created_record(call: Call, access: Access | None, rollout: Rollout) -> None:
    record(
        call,
        access,
        "firmware.rollout.create",
        "firmware_rollout",
        rollout.id,
        {
            "name": rollout.name,
            "targets": rollout.targets,
            "tenant_ids": rollout.tenant_ids,
            "group_id": rollout.group_id,
            "failure_threshold_percent": rollout.failure_threshold_percent,
            "wave_timeout_seconds": rollout.wave_timeout_seconds,
            "window": rollout.window,
            "excluded": rollout.excluded,
        },
    )


async def _list(call: Call, tenant_id: str | None) -> dict[str, object]:
    query: RolloutListQuery = call.query
    statement = select(Rollout)
    if tenant_id is not None:
        statement = statement.where(Rollout.tenant_id == tenant_id)
    if query.status is not None:
        statement = statement.where(Rollout.status == query.status)
    statement = apply_keyset(
        statement, Rollout.id, Rollout.id, query.after, query.limit, descending=True
    )
    rows = (await call.session.scalars(statement)).all()
    page = page_of(rows, query.limit, lambda rollout: (rollout.id, rollout.id))
    return {"items": [_summary(rollout) for rollout in page["items"]], "next": page["next"]}


async def _rollout(call: Call, tenant_id: str | None) -> Rollout:
    """The rollout in the path; a tenant sees only its own, the operator every one."""
    raw = call.params["rollout_id"]
    key = path_id(raw)
    rollout = await call.session.get(Rollout, key) if key is not None else None
    if rollout is None or (tenant_id is not None and rollout.tenant_id != tenant_id):
        raise ApiError.not_found("rollout")
    return rollout


async def _devices(call: Call, rollout: Rollout) -> dict[str, object]:
    query: RolloutDeviceQuery = call.query
    statement = (
        select(RolloutDevice, Device.mac, Device.tenant_id)
        .join(Device, Device.id == RolloutDevice.device_id)
        .where(RolloutDevice.rollout_id == rollout.id)
    )
    if query.state is not None:
        statement = statement.where(RolloutDevice.state == query.state)
    if query.wave is not None:
        statement = statement.where(RolloutDevice.wave == query.wave)
    statement = apply_keyset(
        statement, RolloutDevice.device_id, RolloutDevice.device_id, query.after, query.limit
    )
    rows = (await call.session.execute(statement)).all()
    page = page_of(rows, query.limit, lambda row: (row[0].device_id, row[0].device_id))
    items = [
        RolloutDeviceOut(
            device_id=member.device_id,
            mac=mac,
            tenant_id=tenant_id,
            wave=member.wave,
            vendor=member.vendor,
            model=member.model,
            version=member.version,
            from_version=member.from_version,
            reported_version=member.reported_version,
            state=member.state,
            detail=member.detail,
            offered_at=member.offered_at,
            download_started_at=member.download_started_at,
            finished_at=member.finished_at,
        )
        for member, mac, tenant_id in page["items"]
    ]
    return {"items": items, "next": page["next"]}


Control = Callable[..., Awaitable[dict[str, object]]]


async def _control(
    call: Call, access: Access | None, rollout: Rollout, action: str, control: Control, **kw: bool
) -> RolloutOut:
    try:
        changes = await control(call.session, rollout, call.now, **kw)
    except StaleDataError:
        raise ApiError.conflict("the rollout changed meanwhile; read it and try again") from None
    if changes:
        record(call, access, f"firmware.rollout.{action}", "firmware_rollout", rollout.id, changes)
    return await rollout_out(call, rollout)


# --- the operator's -----------------------------------------------------------------------------


@api.route(
    "GET",
    "/firmware/rollouts",
    summary="Every rollout, newest first (operator)",
    tag=TAG,
    query=RolloutListQuery,
    response=Page[RolloutSummary],
)
async def list_rollouts(call: Call) -> dict[str, object]:
    require_operator(call)
    return await _list(call, None)


@api.route(
    "POST",
    "/firmware/rollouts",
    summary="Roll firmware out across tenants in waves (operator)",
    tag=TAG,
    body=OperatorRolloutCreate,
    response=RolloutOut,
    status=201,
)
async def create_rollout(call: Call) -> RolloutOut:
    require_operator(call)
    body: OperatorRolloutCreate = call.body
    request = _request(call, body, tenant_id=None, tenant_ids=body.tenant_ids)
    rollout = await rollouts.create_rollout(
        call.session, request, created_by=call.user.id, now=call.now
    )
    _created_record(call, None, rollout)
    return await rollout_out(call, rollout)


@api.route(
    "GET",
    "/firmware/rollouts/{rollout_id}",
    summary="A rollout with its progress per wave (operator: any rollout)",
    tag=TAG,
    response=RolloutOut,
)
async def get_rollout(call: Call) -> RolloutOut:
    require_operator(call)
    return await rollout_out(call, await _rollout(call, None))


@api.route(
    "GET",
    "/firmware/rollouts/{rollout_id}/devices",
    summary="Each device of a rollout and its state (operator)",
    tag=TAG,
    query=RolloutDeviceQuery,
    response=Page[RolloutDeviceOut],
)
async def list_rollout_devices(call: Call) -> dict[str, object]:
    require_operator(call)
    return await _devices(call, await _rollout(call, None))


def _operator_control(action: str, control: Control, summary: str, body: type | None) -> None:
    async def handler(call: Call) -> RolloutOut:
        require_operator(call)
        rollout = await _rollout(call, None)
        options = call.body.model_dump() if call.body is not None else {}
        return await _control(call, None, rollout, action, control, **options)

    handler.__name__ = f"{action}_rollout"
    api.route(
        "POST",
        f"/firmware/rollouts/{{rollout_id}}/{action}",
        summary=summary,
        tag=TAG,
        body=body,
        response=RolloutOut,
    )(handler)


def _tenant_control(action: str, control: Control, summary: str, body: type | None) -> None:
    async def handler(call: Call) -> RolloutOut:
        access = await require(call, call.params["tenant_id"], "firmware_rollout", "write")
        rollout = await _rollout(call, access.tenant.tenant_id)
        options = call.body.model_dump() if call.body is not None else {}
        return await _control(call, access, rollout, action, control, **options)

    handler.__name__ = f"{action}_tenant_rollout"
    api.route(
        "POST",
        f"/tenants/{{tenant_id}}/firmware/rollouts/{{rollout_id}}/{action}",
        summary=summary,
        tag=TAG,
        body=body,
        response=RolloutOut,
    )(handler)


_CONTROLS: tuple[tuple[str, Control, str, type | None], ...] = (
    ("pause", rollouts.pause, "Pause: release no further wave (idempotent)", None),
    (
        "resume",
        rollouts.resume,
        "Resume a paused or halted rollout, optionally retrying the active wave's failures",
        ResumeRequest,
    ),
    (
        "abort",
        rollouts.abort,
        "Abort: stop offering the version; devices follow their targets again",
        None,
    ),
)
for _action, _control_function, _summary_text, _body in _CONTROLS:
    _operator_control(_action, _control_function, _summary_text, _body)


# --- a tenant's -------------------------------------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/firmware/rollouts",
    summary="A tenant's rollouts, newest first",
    tag=TAG,
    query=RolloutListQuery,
    response=Page[RolloutSummary],
)
async def list_tenant_rollouts(call: Call) -> dict[str, object]:
    access = await require(call, call.params["tenant_id"], "firmware_rollout", "read")
    return await _list(call, access.tenant.tenant_id)


@api.route(
    "POST",
    "/tenants/{tenant_id}/firmware/rollouts",
    summary="Roll firmware out to the tenant's devices (or one group's) in waves",
    tag=TAG,
    body=TenantRolloutCreate,
    response=RolloutOut,
    status=201,
)
async def create_tenant_rollout(call: Call) -> RolloutOut:
    access = await require(call, call.params["tenant_id"], "firmware_rollout", "write")
    body: TenantRolloutCreate = call.body
    if body.group_id is not None:
        await owned(call, DeviceGroup, body.group_id, access.tenant.tenant_id, "device group")
    request = _request(call, body, tenant_id=access.tenant.tenant_id, group_id=body.group_id)
    rollout = await rollouts.create_rollout(
        call.session, request, created_by=call.user.id, now=call.now
    )
    _created_record(call, access, rollout)
    return await rollout_out(call, rollout)


@api.route(
    "GET",
    "/tenants/{tenant_id}/firmware/rollouts/{rollout_id}",
    summary="A tenant's rollout with its progress per wave",
    tag=TAG,
    response=RolloutOut,
)
async def get_tenant_rollout(call: Call) -> RolloutOut:
    access = await require(call, call.params["tenant_id"], "firmware_rollout", "read")
    return await rollout_out(call, await _rollout(call, access.tenant.tenant_id))


@api.route(
    "GET",
    "/tenants/{tenant_id}/firmware/rollouts/{rollout_id}/devices",
    summary="Each device of a tenant's rollout and its state",
    tag=TAG,
    query=RolloutDeviceQuery,
    response=Page[RolloutDeviceOut],
)
async def list_tenant_rollout_devices(call: Call) -> dict[str, object]:
    access = await require(call, call.params["tenant_id"], "firmware_rollout", "read")
    return await _devices(call, await _rollout(call, access.tenant.tenant_id))


for _action, _control_function, _summary_text, _body in _CONTROLS:
    _tenant_control(_action, _control_function, _summary_text, _body)
