"""Devices of a tenant: register, list, assign, send to user, retire, import, claim."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import and_, not_, or_, select

from dls.api.access import device_in_path, owned, record, require, require_operator
from dls.api.common import api
from dls.api.device_settings import breaks_devices
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel, RowId
from dls.devices import client_certificates, registry
from dls.devices.effective import join_documents, revision_column
from dls.devices.models import (
    Device,
    DeviceStatus,
    ProvisioningRecord,
    RefusalReason,
    UnclaimedDevice,
)
from dls.provisioning.impact import Broken, Impact, device_problem
from dls.tenancy.models import User

TAG = "devices"

Mac = Annotated[str, StringConstraints(min_length=12, max_length=17)]
Line = Annotated[int, Field(ge=1, le=64)]


class RefusalOut(BaseModel):
    at: dt.datetime
    reason: RefusalReason = Field(
        description="wrong_password: the Digest response does not match its password (or "
        "names another user); no_password: Digest was sent, but the device has no Digest "
        "password; wrong_uri: the response was computed for another request-target; "
        "wrong_certificate: a client certificate that is not this device's (replaced or "
        "revoked since it was issued, or a vendor's naming another MAC) and no Digest."
    )
    address: str | None = Field(description="Where the request came from.")


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mac: str
    vendor: str
    model: str
    firmware_version: str | None
    tenant_id: str
    user_id: int | None
    user_line: int
    group_id: int | None
    status: DeviceStatus
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    last_address: str | None
    last_user_agent: str | None
    last_revision: str | None = Field(description="Configuration revision last fetched.")
    last_refusal: RefusalOut | None = Field(
        description="The last request that named this device and did not prove it: the "
        "phone got the 404 an unknown MAC gets; this says why. Recorded within about a "
        "second, like last_seen; a later successful fetch shows in last_seen."
    )
    digest_password_set: bool = Field(description="Whether HTTP Digest credentials exist.")
    client_certificate_sha256: str | None = Field(
        description="Fingerprint of the client certificate dls issued to it, the only one "
        "of dls's device CA it accepts from this device."
    )
    client_certificate_not_after: dt.datetime | None
    shipped_at: dt.datetime | None
    shipment_ref: str | None
    retired_at: dt.datetime | None
    created_at: dt.datetime


def device_out(device: Device) -> DeviceOut:
    return DeviceOut.model_validate(
        {
            **{k: getattr(device, k) for k in DeviceOut.model_fields if hasattr(device, k)},
            "digest_password_set": device.digest_password is not None,
            "last_refusal": (
                {
                    "at": device.last_refused_at,
                    "reason": device.last_refused_reason,
                    "address": device.last_refused_address,
                }
                if device.last_refused_at is not None
                else None
            ),
        }
    )


class DeviceCreate(RequestModel):
    mac: Mac = Field(description="12 hex digits; ':', '-' and '.' separators are accepted.")
    vendor: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    user_id: RowId | None = None
    user_line: Line = 1
    group_id: RowId | None = None


class DeviceUpdate(RequestModel):
    # Omitted fields stay; null clears user or group.
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] = None  # type: ignore[assignment]
    user_id: RowId | None = None
    user_line: Line = None  # type: ignore[assignment]
    group_id: RowId | None = None
    force: bool = Field(
        default=False,
        description="Make the change even when the device, which gets a configuration now, "
        "would get none after it (otherwise 422 breaks_devices, saying why).",
    )


class DeviceListQuery(PageQuery):
    q: str | None = Field(default=None, max_length=64, description="MAC part, model, user name.")
    status: DeviceStatus | None = None
    model: str | None = Field(default=None, max_length=64)
    user_id: RowId | None = None
    refused: bool | None = Field(
        default=None,
        description="true: devices refused since their last successful fetch (their last "
        "refusal is later, or they never fetched): the phones that cannot get in now; "
        "false: the others.",
    )
    sort: Literal["mac", "id"] = "mac"


class SendRequest(RequestModel):
    shipment_ref: Annotated[str, StringConstraints(max_length=100)] | None = None


class DigestRequest(RequestModel):
    password: Annotated[str, StringConstraints(min_length=16, max_length=128)] | None = Field(
        default=None, description="Omit to have the server generate one."
    )


class DigestOut(BaseModel):
    username: str = Field(description="The device's MAC, as the phone sends it.")
    password: str = Field(description="Shown once; stored encrypted, never returned again.")


class ClientCertificateOut(BaseModel):
    certificate_pem: str = Field(description="For the phone's device certificate slot.")
    private_key_pem: str = Field(description="Shown once; dls keeps no copy.")
    ca_pem: str = Field(description="dls's device CA, for phones that want the chain.")
    sha256: str
    not_after: dt.datetime


class ImportRequest(RequestModel):
    csv: Annotated[str, StringConstraints(max_length=1_000_000)] = Field(
        description=(
            "Rows of mac, model, user, line, separated by commas, semicolons or tabs (as "
            "spreadsheets save them; a byte-order mark is ignored). A header row is "
            "optional and may name the columns in any order; mac and model are required, "
            "user and line may be empty."
        )
    )


class ImportRowOut(BaseModel):
    row: int
    mac: str
    outcome: Literal["created", "error"]
    device_id: int | None
    error: str | None


class ClaimRequest(RequestModel):
    mac: Mac
    model: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="Defaults to the model the device reported."
    )
    user_id: RowId | None = None
    user_line: Line = 1


class UnclaimedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    mac: str
    vendor: str
    model: str | None
    firmware_version: str | None
    address: str | None
    user_agent: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    requests: int


class UnclaimedQuery(PageQuery):
    vendor: str | None = Field(default=None, max_length=32)


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices",
    summary="Devices of a tenant, searchable",
    tag=TAG,
    query=DeviceListQuery,
    response=Page[DeviceOut],
)
async def list_devices(call: Call) -> dict[str, object]:
    access = await require(call, call.params["tenant_id"], "device", "read")
    query: DeviceListQuery = call.query
    statement = select(Device).where(Device.tenant_id == access.tenant.tenant_id)
    if query.status is not None:
        statement = statement.where(Device.status == query.status)
    if query.model:
        statement = statement.where(Device.model == query.model)
    if query.user_id is not None:
        statement = statement.where(Device.user_id == query.user_id)
    if query.refused is not None:
        refused_now = and_(
            Device.last_refused_at.is_not(None),
            or_(Device.last_seen.is_(None), Device.last_refused_at > Device.last_seen),
        )
        statement = statement.where(refused_now if query.refused else not_(refused_now))
    if query.q:
        needle = query.q.lower()
        mac_part = registry.normalise_mac(needle) or needle.replace(":", "").replace("-", "")
        users = select(User.id).where(
            User.tenant_id == access.tenant.tenant_id, User.username == query.q
        )
        statement = statement.where(
            or_(
                Device.mac.contains(mac_part, autoescape=True),
                Device.model == query.q,
                Device.user_id.in_(users),
            )
        )
    sort = Device.mac if query.sort == "mac" else Device.id
    statement = apply_keyset(statement, sort, Device.id, query.after, query.limit)
    rows = (await call.session.scalars(statement)).all()
    page = page_of(rows, query.limit, lambda d: (getattr(d, query.sort), d.id))
    return {"items": [device_out(d) for d in page["items"]], "next": page["next"]}


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices",
    summary="Register a validated device",
    tag=TAG,
    body=DeviceCreate,
    response=DeviceOut,
    status=201,
)
async def create_device(call: Call) -> DeviceOut:
    access = await require(call, call.params["tenant_id"], "device", "write")
    body: DeviceCreate = call.body
    device, changes = await registry.create_device(
        call.session,
        access.tenant,
        mac=body.mac,
        vendor=body.vendor,
        model=body.model,
        assignment=registry.Assignment(body.user_id, body.user_line, body.group_id),
        lookup=call.services.catalog.lookup,
    )
    record(call, access, "device.create", "device", device.id, changes)
    return device_out(device)


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}",
    summary="One device",
    tag=TAG,
    response=DeviceOut,
)
async def get_device(call: Call) -> DeviceOut:
    _, device = await device_in_path(call, "device", "read")
    return device_out(device)


@api.route(
    "PATCH",
    "/tenants/{tenant_id}/devices/{device_id}",
    summary="Assign a user, line or group, or correct the model",
    tag=TAG,
    body=DeviceUpdate,
    response=DeviceOut,
)
async def update_device(call: Call) -> DeviceOut:
    access, device = await device_in_path(call, "device", "write")
    body: DeviceUpdate = call.body
    check = not body.force and device.status is not DeviceStatus.RETIRED
    before = await device_problem(call.session, call.services, device.id) if check else None
    changes = await registry.update_assignment(
        call.session,
        access.tenant,
        device,
        body.model_dump(exclude_unset=True, exclude={"force"}),
        call.services.catalog.lookup,
    )
    if changes and check and before is None:
        await call.session.flush()
        after = await device_problem(call.session, call.services, device.id)
        if after is not None:  # raised: the transaction is rolled back, nothing changes
            raise breaks_devices(Impact(1, 1, [Broken(device.id, device.mac, after)]))
    if changes:
        record(call, access, "device.update", "device", device.id, changes)
    return device_out(device)


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/send",
    summary="Record that the device was sent to its user (notifies nothing external)",
    tag=TAG,
    body=SendRequest,
    response=DeviceOut,
)
async def send_device(call: Call) -> DeviceOut:
    access, device = await device_in_path(call, "device", "write")
    body: SendRequest = call.body
    changes = registry.send_to_user(device, call.now, body.shipment_ref)
    record(call, access, "device.send", "device", device.id, changes)
    return device_out(device)


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/retire",
    summary="Retire a device: it is no longer served",
    tag=TAG,
    response=DeviceOut,
)
async def retire_device(call: Call) -> DeviceOut:
    access, device = await device_in_path(call, "device", "write")
    changes = registry.retire(device, call.now)
    if changes:
        record(call, access, "device.retire", "device", device.id, changes)
    return device_out(device)


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/digest-credentials",
    summary="Set or generate the device's HTTP Digest password (shown once)",
    tag=TAG,
    body=DigestRequest,
    response=DigestOut,
)
async def set_digest(call: Call) -> DigestOut:
    access, device = await device_in_path(call, "device", "write")
    body: DigestRequest = call.body
    password = registry.set_digest_password(device, call.services.box, body.password)
    record(
        call,
        access,
        "device.digest_credentials",
        "device",
        device.id,
        {"digest_password": "set", "generated": body.password is None},
    )
    return DigestOut(username=device.mac, password=password)


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/{device_id}/client-certificate",
    summary="Issue the device a client certificate from dls's device CA (key shown once)",
    tag=TAG,
    response=ClientCertificateOut,
    status=201,
    writes=False,  # the key pair is made before the write lock is taken (Call.writing)
)
async def issue_client_certificate(call: Call) -> ClientCertificateOut:
    tenant_id, device_id = call.params["tenant_id"], call.params["device_id"]
    access = await require(call, tenant_id, "device", "write")
    device = await owned(call, Device, device_id, access.tenant.tenant_id, "device")
    issued = await client_certificates.make(device, call.services.pki)
    async with call.writing() as writing:  # decided again: the key took a while
        access = await require(writing, tenant_id, "device", "write")
        device = await owned(writing, Device, device_id, access.tenant.tenant_id, "device")
        changes = client_certificates.assign(device, issued)
        record(writing, access, "device.client_certificate.issue", "device", device.id, changes)
    return ClientCertificateOut.model_validate(issued, from_attributes=True)


@api.route(
    "DELETE",
    "/tenants/{tenant_id}/devices/{device_id}/client-certificate",
    summary="Revoke the client certificate dls issued to the device",
    tag=TAG,
)
async def revoke_client_certificate(call: Call) -> None:
    access, device = await device_in_path(call, "device", "write")
    changes = client_certificates.revoke(device)
    if changes:
        record(call, access, "device.client_certificate.revoke", "device", device.id, changes)


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/import",
    summary="Register devices from CSV (mac,model,user,line); a report per row",
    tag=TAG,
    body=ImportRequest,
    response=list[ImportRowOut],
)
async def import_devices(call: Call) -> list[ImportRowOut]:
    access = await require(call, call.params["tenant_id"], "device", "write")
    body: ImportRequest = call.body
    rows = registry.parse_csv(body.csv)
    catalog = call.services.catalog
    results = await registry.import_csv(
        call.session, access.tenant, catalog.vendor_of, rows, catalog.lookup
    )
    created = [r.device_id for r in results if r.outcome == "created"]
    record(
        call,
        access,
        "device.import",
        "device",
        "csv",
        {"rows": len(results), "created": len(created), "device_ids": created[:100]},
    )
    return [
        ImportRowOut(
            row=r.row,
            mac=r.mac,
            outcome=r.outcome,  # type: ignore[arg-type]
            device_id=r.device_id,
            error=r.error,
        )
        for r in results
    ]


@api.route(
    "POST",
    "/tenants/{tenant_id}/devices/claim",
    summary="Claim an unclaimed device by MAC into this tenant",
    tag=TAG,
    body=ClaimRequest,
    response=DeviceOut,
    status=201,
)
async def claim_device(call: Call) -> DeviceOut:
    access = await require(call, call.params["tenant_id"], "device", "write")
    body: ClaimRequest = call.body
    mac = registry.normalise_mac(body.mac)
    unclaimed = await call.session.get(UnclaimedDevice, mac) if mac else None
    if unclaimed is None:
        raise ApiError.not_found("unclaimed device")
    model = body.model or unclaimed.model
    if model is None:
        raise ApiError.invalid("model", "the device did not report its model; name it")
    device, changes = await registry.create_device(
        call.session,
        access.tenant,
        mac=unclaimed.mac,
        vendor=unclaimed.vendor,
        model=model,
        assignment=registry.Assignment(body.user_id, body.user_line),
        lookup=call.services.catalog.lookup,
    )
    device.firmware_version = unclaimed.firmware_version
    device.first_seen, device.last_seen = unclaimed.first_seen, unclaimed.last_seen
    device.last_address, device.last_user_agent = unclaimed.address, unclaimed.user_agent
    record(call, access, "device.claim", "device", device.id, changes)
    return device_out(device)


@api.route(
    "GET",
    "/unclaimed-devices",
    summary="Devices that asked for configuration but belong to no tenant (operator)",
    tag=TAG,
    query=UnclaimedQuery,
    response=Page[UnclaimedOut],
)
async def list_unclaimed(call: Call) -> dict[str, object]:
    require_operator(call)
    query: UnclaimedQuery = call.query
    statement = select(UnclaimedDevice)
    if query.vendor:
        statement = statement.where(UnclaimedDevice.vendor == query.vendor)
    statement = apply_keyset(
        statement, UnclaimedDevice.mac, UnclaimedDevice.mac, query.after, query.limit
    )
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda u: (u.mac, u.mac))


class LedgerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    file: str
    content_hash: str
    revision: str
    at: dt.datetime
    address: str | None
    user_agent: str | None


class OutdatedOut(BaseModel):
    device: DeviceOut
    current_revision: str
    last_revision: str | None


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}/ledger",
    summary="What the device fetched in the last ledger_retention_days: file, content hash, "
    "revision, time, address",
    tag=TAG,
    query=PageQuery,
    response=Page[LedgerOut],
)
async def device_ledger(call: Call) -> dict[str, object]:
    _, device = await device_in_path(call, "device", "read")
    query: PageQuery = call.query
    statement = apply_keyset(
        select(ProvisioningRecord).where(ProvisioningRecord.device_id == device.id),
        ProvisioningRecord.id,
        ProvisioningRecord.id,
        query.after,
        query.limit,
        descending=True,
    )
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda r: (r.id, r.id))


@api.route(
    "GET",
    "/tenants/{tenant_id}/outdated-devices",
    summary="Devices that have not yet fetched their current configuration revision",
    tag=TAG,
    query=PageQuery,
    response=Page[OutdatedOut],
)
async def outdated_devices(call: Call) -> dict[str, object]:
    """The tenant's devices whose last fetched revision is not their current one, in id
    order: one query per page, the revisions compared by the database."""
    access = await require(call, call.params["tenant_id"], "device", "read")
    query: PageQuery = call.query
    statement, docs = join_documents(select(Device), "current")
    current = revision_column(docs)
    statement = apply_keyset(
        statement.add_columns(current).where(
            Device.tenant_id == access.tenant.tenant_id,
            Device.status != DeviceStatus.RETIRED,
            Device.last_revision.is_distinct_from(current),
        ),
        Device.id,
        Device.id,
        query.after,
        query.limit,
    )
    rows = (await call.session.execute(statement)).all()
    page = page_of(rows, query.limit, lambda row: (row[0].id, row[0].id))
    items = [
        OutdatedOut(
            device=device_out(device),
            current_revision=revision,
            last_revision=device.last_revision,
        )
        for device, revision in page["items"]
    ]
    return {"items": items, "next": page["next"]}
