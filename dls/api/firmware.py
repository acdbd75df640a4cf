"""Firmware images and target versions.

The operator imports images (streamed into the blob store, checked against the catalog)
and sets the default version per model; a tenant's admins, or its partner on its behalf,
set the tenant's own target per model or per device group. A device pins itself with its
own ``firmware.version`` setting. Rollouts are in ``dls.api.firmware_rollouts``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import or_, select

from dls.api.access import owned, record, require, require_operator
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel
from dls.devices.models import DeviceGroup
from dls.firmware.imports import (
    ImportRefused,
    ImportRequest,
    audit_changes,
    check_request,
    receive_image,
    record_image,
)
from dls.firmware.models import ChecksumSource, FirmwareImage, FirmwareTarget, TargetScope
from dls.firmware.targets import SYSTEM_SCOPE_KEY, set_target

TAG = "firmware"
UPLOAD_CHUNK = 1024 * 1024  # bytes per read of the request body

Vendor = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Model = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\r\n\t]+$")]


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    vendor: str
    version: str
    models: list[str]
    sha256: str
    size: int
    file_name: str
    checksum_source: ChecksumSource = Field(
        description="catalog: matched the published SHA-256; operator: no digest is "
        "published, the operator vouches for the bytes."
    )
    imported_at: dt.datetime


class ImportOut(ImageOut):
    created: bool = Field(description="False: these bytes were already imported.")


class ImportQuery(RequestModel):
    vendor: Vendor
    version: Version
    models: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="Comma-separated validated models the image is for."
    )
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None, description="Name in download URLs; default the catalog's file name."
    )


class ImageQuery(PageQuery):
    vendor: Vendor | None = None


class TargetOut(BaseModel):
    scope: TargetScope
    group_id: int | None = Field(description="For scope group.")
    vendor: str
    model: str
    version: str | None = Field(description="null: no target at this level (it was removed).")
    updated_at: dt.datetime | None


class TargetPut(RequestModel):
    vendor: Vendor
    model: Model
    version: Version | None = Field(description="null removes this level's target.")


class TenantTargetPut(TargetPut):
    # Checked by owned(): any id no group of the tenant has, in range or not, is a 404.
    group_id: int | None = Field(default=None, description="A device group's target instead.")


def _target_out(row: FirmwareTarget) -> TargetOut:
    return TargetOut(
        scope=row.scope,
        group_id=int(row.scope_key) if row.scope is TargetScope.GROUP else None,
        vendor=row.vendor,
        model=row.model,
        version=row.version,
        updated_at=row.updated_at,
    )


def _validated_model(call: Call, vendor: str, model: str) -> str:
    found = call.services.catalog.lookup(vendor, model)
    if found is None:
        raise ApiError.invalid("model", f"{vendor} {model} is not a validated model")
    return found[1]


# --- images ---------------------------------------------------------------------------------


@api.route(
    "POST",
    "/firmware/images",
    summary="Import a firmware image (operator): the request body is the image's bytes",
    tag=TAG,
    query=ImportQuery,
    response=ImportOut,
    status=201,
    # The image may take minutes to arrive: the request's transaction ends once the caller
    # is authenticated, and the write lock is taken once all of it is in, for the record.
    writes=False,
    streams_body=True,
)
async def import_firmware_image(call: Call) -> ImportOut:
    """Streamed to disk, never held in memory; refused when it exceeds the size limit or
    does not match the SHA-256 (or size) the catalog publishes for that release."""
    require_operator(call)
    query: ImportQuery = call.query
    request = call.request
    if request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send the image itself as the body")
    runtime = call.services.firmware
    limit = call.services.settings.firmware_max_image_size
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"images are limited to {limit} bytes")
    models = tuple(name.strip() for name in query.models.split(",") if name.strip())
    try:
        checked = check_request(
            ImportRequest(query.vendor, query.version, models, query.file_name),
            runtime.catalog,
            call.services.catalog.lookup,
        )
        arriving = _each_within(
            request.content.iter_chunked(UPLOAD_CHUNK), call.services.settings.body_timeout
        )
        try:
            stored = await receive_image(runtime.store, checked, arriving, max_size=limit)
        except TimeoutError:  # nothing came for body_timeout: the upload is stalled
            raise ApiError(408, "timeout", "the image stopped arriving", close=True) from None
        except ConnectionError:  # the uploader hung up: not the database's doing
            raise ApiError(400, "incomplete_body", "the image ended early", close=True) from None
        async with call.writing() as writing:
            require_operator(writing)  # still, after an upload that took a while
            result = await record_image(
                writing.session, checked, stored, writing.user.id, writing.now
            )
            image = result.image
            if result.created:
                record(
                    writing,
                    None,
                    "firmware.image.import",
                    "firmware_image",
                    image.id,
                    audit_changes(image),
                )
    except ImportRefused as refused:
        status = {"too_large": 413, "conflict": 409}.get(refused.reason, 422)
        details = [{"field": refused.field, "message": refused.message, "type": refused.reason}]
        raise ApiError(status, refused.reason, str(refused), details=details) from None
    out = ImageOut.model_validate(image).model_dump()
    return ImportOut.model_validate({**out, "created": result.created})


async def _each_within(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """``chunks``, each of which must arrive within ``seconds``: an image may take
    minutes as a whole, but an upload that stalls ends (TimeoutError)."""
    while True:
        async with asyncio.timeout(seconds):
            chunk = await anext(chunks, None)
        if chunk is None:
            return
        yield chunk


async def _images(call: Call, query: ImageQuery) -> dict[str, object]:
    statement = select(FirmwareImage)
    if query.vendor:
        statement = statement.where(FirmwareImage.vendor == query.vendor)
    statement = apply_keyset(
        statement, FirmwareImage.id, FirmwareImage.id, query.after, query.limit
    )
    rows = (await call.session.scalars(statement)).all()
    page = page_of(rows, query.limit, lambda image: (image.id, image.id))
    return {
        "items": [ImageOut.model_validate(image) for image in page["items"]],
        "next": page["next"],
    }


@api.route(
    "GET",
    "/firmware/images",
    summary="Imported firmware images (operator)",
    tag=TAG,
    query=ImageQuery,
    response=Page[ImageOut],
)
async def list_firmware_images(call: Call) -> dict[str, object]:
    require_operator(call)
    return await _images(call, call.query)


@api.route(
    "GET",
    "/tenants/{tenant_id}/firmware/images",
    summary="Firmware images a tenant can choose target versions from",
    tag=TAG,
    query=ImageQuery,
    response=Page[ImageOut],
)
async def list_tenant_firmware_images(call: Call) -> dict[str, object]:
    await require(call, call.params["tenant_id"], "firmware_target", "read")
    return await _images(call, call.query)


# --- targets ----------------------------------------------------------------------------------


@api.route(
    "GET",
    "/firmware/targets",
    summary="The operator's default firmware version per model",
    tag=TAG,
    response=list[TargetOut],
)
async def list_default_targets(call: Call) -> list[TargetOut]:
    require_operator(call)
    rows = await call.session.scalars(
        select(FirmwareTarget)
        .where(FirmwareTarget.scope == TargetScope.SYSTEM)
        .order_by(FirmwareTarget.vendor, FirmwareTarget.model_key)
    )
    return [_target_out(row) for row in rows]


@api.route(
    "PUT",
    "/firmware/targets",
    summary="Set or remove the default firmware version of a model (operator)",
    tag=TAG,
    body=TargetPut,
    response=TargetOut,
)
async def put_default_target(call: Call) -> TargetOut:
    require_operator(call)
    body: TargetPut = call.body
    model = _validated_model(call, body.vendor, body.model)
    row, changes = await set_target(
        call.session,
        TargetScope.SYSTEM,
        SYSTEM_SCOPE_KEY,
        body.vendor,
        model,
        body.version,
        updated_by=call.user.id,
        now=call.now,
    )
    if changes:
        record(
            call,
            None,
            "firmware.target.set",
            "firmware_target",
            f"system:{body.vendor}:{model}",
            changes,
        )
    if row is None:
        return TargetOut(
            scope=TargetScope.SYSTEM,
            group_id=None,
            vendor=body.vendor,
            model=model,
            version=None,
            updated_at=None,
        )
    return _target_out(row)


@api.route(
    "GET",
    "/tenants/{tenant_id}/firmware/targets",
    summary="A tenant's own firmware versions per model and per device group",
    tag=TAG,
    response=list[TargetOut],
)
async def list_tenant_targets(call: Call) -> list[TargetOut]:
    access = await require(call, call.params["tenant_id"], "firmware_target", "read")
    groups = select(DeviceGroup.id).where(DeviceGroup.tenant_id == access.tenant.tenant_id)
    group_keys = [str(group_id) for group_id in await call.session.scalars(groups)]
    rows = await call.session.scalars(
        select(FirmwareTarget)
        .where(
            or_(
                (FirmwareTarget.scope == TargetScope.TENANT)
                & (FirmwareTarget.scope_key == access.tenant.tenant_id),
                (FirmwareTarget.scope == TargetScope.GROUP)
                & FirmwareTarget.scope_key.in_(group_keys),
            )
        )
        .order_by(FirmwareTarget.scope, FirmwareTarget.vendor, FirmwareTarget.model_key)
    )
    return [_target_out(row) for row in rows]


@api.route(
    "PUT",
    "/tenants/{tenant_id}/firmware/targets",
    summary="Set or remove a tenant's (or a device group's) firmware version of a model",
    tag=TAG,
    body=TenantTargetPut,
    response=TargetOut,
)
async def put_tenant_target(call: Call) -> TargetOut:
    access = await require(call, call.params["tenant_id"], "firmware_target", "write")
    body: TenantTargetPut = call.body
    model = _validated_model(call, body.vendor, body.model)
    if body.group_id is not None:
        group = await owned(
            call, DeviceGroup, body.group_id, access.tenant.tenant_id, "device group"
        )
        scope, key = TargetScope.GROUP, str(group.id)
    else:
        scope, key = TargetScope.TENANT, access.tenant.tenant_id
    row, changes = await set_target(
        call.session, scope, key, body.vendor, model, body.version,
        updated_by=call.user.id, now=call.now,
    )  # fmt: skip
    if changes:
        record(
            call,
            access,
            "firmware.target.set",
            "firmware_target",
            f"{scope.value}:{key}:{body.vendor}:{model}",
            changes,
        )
    if row is None:
        return TargetOut(
            scope=scope,
            group_id=body.group_id,
            vendor=body.vendor,
            model=model,
            version=None,
            updated_at=None,
        )
    return _target_out(row)
