"""Unify phones: device jobs, users' deployment PINs, the tenant's secure-mode policy.

Jobs are rows any instance's device path delivers; creating one is all the API does (a
background loop on the device listeners sends the contact-me). PINs are stored
encrypted so they can be shown again, with a keyed hash for the phone's look-up; the
plaintext appears only in the answer to the user or admin who reads it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import select

from dls.api.access import device_in_path, owned, record, require
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel
from dls.audit import Via
from dls.devices.models import Device, DeviceStatus
from dls.devices.unify import (
    MAX_PIN_REFUSALS,
    PIN_LOOKUP_PURPOSE,
    SECRET_MARKER,
    DeploymentPin,
    DeviceJob,
    JobKind,
    JobState,
    WpiDevice,
    keyed_hash,
    new_pin,
    pin_purpose,
)
from dls.tenancy.models import User, WpiSecureMode

TAG = "unify"
VENDOR = "unify"
MAX_FILES = 16
MAX_PIN_COLLISIONS = 8  # fresh PINs tried before giving up (10^8 values, few users)

HttpsUrl = Annotated[str, StringConstraints(pattern=r"^https://[^\s]{1,500}$")]
# Dotted (3.5.16.0) as SoftwareDeployment wants it [DG p.56]; "V3 R5.16.0" is converted.
SoftwareVersion = Annotated[
    str, StringConstraints(pattern=r"^(?:[0-9]{1,4}(?:\.[0-9]{1,6}){1,4}|V[0-9]+ ?R[0-9.]+)$")
]


class FileSpec(RequestModel):
    url: HttpsUrl = Field(description="Where the phone downloads it (file-https-base-url).")
    file_type: Literal["RINGTONE", "LOGO", "SCREENSAVER", "MOH", "PIC", "LDAP"]
    action: Literal["deploy", "delete"] = "deploy"


class JobCreate(RequestModel):
    kind: JobKind
    files: list[FileSpec] | None = Field(
        default=None, min_length=1, max_length=MAX_FILES, description="file-deployment only."
    )
    url: HttpsUrl | None = Field(default=None, description="software-deployment: the image.")
    version: SoftwareVersion | None = Field(
        default=None, description="software-deployment: e.g. 3.5.16.0 or V3 R5.16.0."
    )
    priority: Literal["normal", "immediate"] = Field(
        default="normal", description="software-deployment: normal waits until idle."
    )
    expires_in_hours: int = Field(default=168, ge=1, le=720)

    @model_validator(mode="after")
    def _fits_kind(self) -> JobCreate:
        wants_files = self.kind is JobKind.FILE_DEPLOYMENT
        wants_image = self.kind is JobKind.SOFTWARE_DEPLOYMENT
        if wants_files != (self.files is not None):
            raise ValueError("files: given for, and only for, a file-deployment")
        if wants_image != (self.url is not None and self.version is not None):
            raise ValueError("url and version: given for, and only for, a software-deployment")
        return self

    def payload(self) -> dict[str, Any]:
        if self.kind is JobKind.FILE_DEPLOYMENT:
            return {"files": [spec.model_dump() for spec in self.files or ()]}
        if self.kind is JobKind.SOFTWARE_DEPLOYMENT:
            return {"url": self.url, "version": _dotted(self.version), "priority": self.priority}
        return {}


def _dotted(version: str | None) -> str:
    """``V3 R5.16.0`` -> ``3.5.16.0`` (the Node DLS's reading [NODE]); dotted passes through."""
    text = (version or "").replace(" ", "")
    if text.startswith("V") and "R" in text:
        major, _, rest = text[1:].partition("R")
        return f"{major}.{rest}"
    return text


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: int
    kind: JobKind
    state: JobState
    payload: dict[str, Any]
    attempts: int = Field(description="Times the command was sent to the phone.")
    detail: str | None
    result: dict[str, Any] | None = Field(description="Per file: the phone's status report.")
    created_by: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime


class JobListQuery(PageQuery):
    state: JobState | None = None


class WpiStateOut(BaseModel):
    mac: str
    secure_since: dt.datetime | None = Field(description="Served only on the secure port since.")
    secure_refused: bool
    last_seen: dt.datetime | None
    last_address: str | None
    contact_me_uri: str | None
    last_contacted_at: dt.datetime | None
    session_open: bool
    inventory: list[dict[str, Any]] | None = Field(
        description="Items last reported; secret items are left out."
    )


class PinCreate(RequestModel):
    line: int = Field(default=1, ge=1, le=64, description="The user's line on the phone.")
    valid_days: int = Field(default=30, ge=1, le=365)


class PinOut(BaseModel):
    user_id: int
    pin: str
    line: int
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    used_by_mac: str | None
    usable: bool = Field(description="Not used, not expired, not refused too often.")


class SecureModeBody(RequestModel):
    mode: WpiSecureMode


class SecureModeOut(BaseModel):
    tenant_id: str
    mode: WpiSecureMode


# --- jobs ---------------------------------------------------------------------------


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/jobs",
    summary="Queue a job for a Unify phone (contact-me follows)",
    tag=TAG,
    body=JobCreate,
    response=JobOut,
    status=201,
)
async def create_job(call: Call) -> DeviceJob:
    tenant_id = call.params["tenant_id"]
    access = await require(call, tenant_id, "device_job", "write")
    body: JobCreate = call.body
    if body.kind is JobKind.FACTORY_RESET:
        access = await require(call, tenant_id, "device_factory_reset", "write")
    device = await owned(call, Device, call.params["device_id"], access.tenant.tenant_id, "device")
    if device.vendor != VENDOR:
        raise ApiError.invalid("kind", "jobs are for Unify (WPI) phones")
    if device.status is DeviceStatus.RETIRED:
        raise ApiError.invalid("device_id", "the device is retired")
    job = DeviceJob(
        device_id=device.id,
        kind=body.kind,
        payload=body.payload(),
        state=JobState.PENDING,
        attempts=0,
        created_by=call.user.id,
        created_at=call.now,
        updated_at=call.now,
        expires_at=call.now + dt.timedelta(hours=body.expires_in_hours),
    )
    call.session.add(job)
    await call.session.flush()
    record(
        call,
        access,
        f"device.job.{body.kind.value}",
        "device",
        device.id,
        {"job_id": job.id, "kind": body.kind.value, "payload": job.payload},
    )
    return job


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}/jobs",
    summary="Jobs of a Unify phone, newest first",
    tag=TAG,
    query=JobListQuery,
    response=Page[JobOut],
)
async def list_jobs(call: Call) -> dict[str, object]:
    _, device = await device_in_path(call, "device_job", "read")
    query: JobListQuery = call.query
    statement = select(DeviceJob).where(DeviceJob.device_id == device.id)
    if query.state is not None:
        statement = statement.where(DeviceJob.state == query.state)
    statement = apply_keyset(
        statement, DeviceJob.id, DeviceJob.id, query.after, query.limit, descending=True
    )
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda job: (job.id, job.id))


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}/wpi",
    summary="What the WPI device path knows of a Unify phone",
    tag=TAG,
    response=WpiStateOut,
)
async def get_wpi_state(call: Call) -> WpiStateOut:
    _, device = await device_in_path(call, "device", "read")
    phone = await call.session.get(WpiDevice, device.mac)
    if phone is None:
        raise ApiError.not_found("WPI state (the phone never contacted us)")
    inventory = None
    if phone.inventory is not None:
        inventory = [
            {"name": name, "index": index, "value": value}
            for name, index, value in phone.inventory
            if not str(value).startswith(SECRET_MARKER)
        ]
    return WpiStateOut(
        mac=phone.mac,
        secure_since=phone.secure_since,
        secure_refused=phone.secure_refused,
        last_seen=phone.last_seen,
        last_address=phone.last_address,
        contact_me_uri=phone.contact_me_uri,
        last_contacted_at=phone.last_contacted_at,
        session_open=phone.session_expires_at is not None and phone.session_expires_at > call.now,
        inventory=inventory,
    )


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/secure-mode/reset",
    summary="Forget that a phone is in secure mode (after a reset by hand)",
    tag=TAG,
    response=WpiStateOut,
)
async def reset_secure_mode(call: Call) -> WpiStateOut:
    access, device = await device_in_path(call, "device_trust", "write")
    phone = await call.session.get(WpiDevice, device.mac)
    if phone is None:
        raise ApiError.not_found("WPI state (the phone never contacted us)")
    changes = {"secure_since": {"old": phone.secure_since, "new": None}}
    phone.secure_since, phone.secure_refused = None, False
    # A message of the phone in flight read the row before this: bumping the version
    # its guarded write checks makes it decide again from the reset row, not write back
    # what it read (dls.provisioning.wpi.phone).
    phone.version += 1
    record(call, access, "device.secure_mode.reset", "device", device.id, changes)
    return await get_wpi_state(call)


# --- deployment PINs ----------------------------------------------------------------


def _pin_out(call: Call, row: DeploymentPin) -> PinOut:
    return PinOut(
        user_id=row.user_id,
        pin=call.services.box.decrypt(row.pin_ciphertext, pin_purpose(row.user_id)),
        line=row.line,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
        used_by_mac=row.used_by_mac,
        usable=(
            row.used_at is None and row.expires_at > call.now and row.attempts < MAX_PIN_REFUSALS
        ),
    )


@api.route(
    "GET",
    "/tenants/{tenant_id}/users/{user_id}/deployment-pin",
    summary="A user's deployment PIN for Unify self-setup (the user's own, or as an admin)",
    tag=TAG,
    response=PinOut,
    writes=True,  # a partner's read is audited
)
async def get_deployment_pin(call: Call) -> PinOut:
    tenant_id = call.params["tenant_id"]
    own = call.params["user_id"] == str(call.user.id) and call.user.tenant_id == tenant_id
    access = await require(call, tenant_id, "deployment_pin", "read_own" if own else "read")
    user = await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user")
    row = await call.session.scalar(select(DeploymentPin).where(DeploymentPin.user_id == user.id))
    if row is None:
        raise ApiError.not_found("deployment PIN (an admin generates it)")
    if access.via is Via.PARTNER:
        # A partner reading a customer user's PIN could set up a phone as that user.
        record(call, access, "deployment_pin.read", "user", user.id)
    return _pin_out(call, row)


@api.route(
    "POST",
    "/tenants/{tenant_id}/users/{user_id}/deployment-pin",
    summary="Generate a user's deployment PIN, replacing any previous one",
    tag=TAG,
    body=PinCreate,
    response=PinOut,
    status=201,
)
async def regenerate_deployment_pin(call: Call) -> PinOut:
    access = await require(call, call.params["tenant_id"], "deployment_pin", "write")
    user = await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user")
    if user.disabled:
        raise ApiError.invalid("user_id", "the user is disabled")
    body: PinCreate = call.body
    hasher = keyed_hash(call.services.box)
    for _ in range(MAX_PIN_COLLISIONS):
        pin = new_pin()
        lookup = hasher.digest(PIN_LOOKUP_PURPOSE, pin)
        taken = await call.session.scalar(
            select(DeploymentPin.id).where(DeploymentPin.lookup_hash == lookup)
        )
        if taken is None:
            break
    else:
        raise ApiError(503, "unavailable", "no free PIN found; try again")
    row = await call.session.scalar(select(DeploymentPin).where(DeploymentPin.user_id == user.id))
    if row is None:
        row = DeploymentPin(user_id=user.id, tenant_id=user.tenant_id)
        call.session.add(row)
    row.pin_ciphertext = call.services.box.encrypt(pin, pin_purpose(user.id))
    row.lookup_hash = lookup
    row.line = body.line
    row.attempts = 0
    row.created_by = call.user.id
    row.created_at = call.now
    row.expires_at = call.now + dt.timedelta(days=body.valid_days)
    row.used_at = row.used_by_mac = None
    await call.session.flush()
    record(
        call,
        access,
        "deployment_pin.regenerate",
        "user",
        user.id,
        {"line": body.line, "expires_at": row.expires_at},
    )
    return _pin_out(call, row)


# --- the tenant's secure-mode policy ------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/wpi-secure-mode",
    summary="Whether the tenant's Unify phones are moved to WPI secure mode",
    tag=TAG,
    response=SecureModeOut,
)
async def get_secure_mode(call: Call) -> SecureModeOut:
    access = await require(call, call.params["tenant_id"], "device", "read")
    return SecureModeOut(tenant_id=access.tenant.tenant_id, mode=access.tenant.wpi_secure_mode)


@api.route(
    "PUT",
    "/tenants/{tenant_id}/wpi-secure-mode",
    summary="Set the secure-mode policy: off, bootstrap, or required before passwords",
    tag=TAG,
    body=SecureModeBody,
    response=SecureModeOut,
)
async def set_secure_mode(call: Call) -> SecureModeOut:
    # Turning it off weakens device trust: the customer's own decision, like MAC-only.
    access = await require(call, call.params["tenant_id"], "device_trust", "write")
    body: SecureModeBody = call.body
    tenant = access.tenant
    if tenant.wpi_secure_mode is not body.mode:
        changes = {"wpi_secure_mode": {"old": tenant.wpi_secure_mode, "new": body.mode}}
        tenant.wpi_secure_mode = body.mode
        record(call, access, "tenant.wpi_secure_mode", "tenant", tenant.tenant_id, changes)
    return SecureModeOut(tenant_id=tenant.tenant_id, mode=tenant.wpi_secure_mode)
