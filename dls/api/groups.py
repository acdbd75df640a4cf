"""Device groups of a tenant: list, create, rename, delete.

A group is a level of settings between the tenant and its users (and a scope of
firmware targets and rollouts); its settings live in ``dls.api.device_settings``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import func, select

from dls.api.access import owned, record, require
from dls.api.common import api
from dls.api.routing import ApiError, Call, RequestModel
from dls.devices.models import Device, DeviceGroup, DeviceStatus, Scope, SettingsDocument
from dls.firmware.models import FirmwareTarget, Rollout, TargetScope
from dls.tenancy.policy import Access

__all__ = ["GroupName", "GroupOut", "group_in_path"]

TAG = "device groups"


class GroupName(RequestModel):
    """A new group, or a group's new name: unique in the tenant."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


class GroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: str
    name: str
    created_at: dt.datetime


@api.route(
    "GET",
    "/tenants/{tenant_id}/groups",
    summary="Device groups of a tenant",
    tag=TAG,
    response=list[GroupOut],
)
async def list_groups(call: Call) -> list[DeviceGroup]:
    access = await require(call, call.params["tenant_id"], "device", "read")
    rows = await call.session.scalars(
        select(DeviceGroup)
        .where(DeviceGroup.tenant_id == access.tenant.tenant_id)
        .order_by(DeviceGroup.name, DeviceGroup.id)
    )
    return list(rows)


@api.route(
    "POST",
    "/tenants/{tenant_id}/groups",
    summary="Create a device group",
    tag=TAG,
    body=GroupName,
    response=GroupOut,
    status=201,
)
async def create_group(call: Call) -> DeviceGroup:
    access = await require(call, call.params["tenant_id"], "device", "write")
    body: GroupName = call.body
    await _name_free(call, access.tenant.tenant_id, body.name)
    group = DeviceGroup(tenant_id=access.tenant.tenant_id, name=body.name)
    call.session.add(group)
    await call.session.flush()
    record(call, access, "group.create", "device_group", group.id, {"name": body.name})
    return group


@api.route(
    "PATCH",
    "/tenants/{tenant_id}/groups/{group_id}",
    summary="Rename a device group",
    tag=TAG,
    body=GroupName,
    response=GroupOut,
)
async def rename_group(call: Call) -> DeviceGroup:
    access, group = await group_in_path(call, "device", "write")
    body: GroupName = call.body
    if body.name != group.name:
        await _name_free(call, access.tenant.tenant_id, body.name)
        changes = {"name": {"old": group.name, "new": body.name}}
        group.name = body.name
        await call.session.flush()
        record(call, access, "group.update", "device_group", group.id, changes)
    return group


@api.route(
    "DELETE",
    "/tenants/{tenant_id}/groups/{group_id}",
    summary="Delete an empty device group, with its settings and firmware targets",
    tag=TAG,
)
async def delete_group(call: Call) -> None:
    """Refused (409) while devices are in the group, which the admin moves first (each
    move is checked for what it does to the device), or while a firmware rollout names it
    (the rollout's record keeps referring to it). Retired devices, which cannot be moved,
    do not hold it: they leave it (registered again, a device gets a group anew).

    The group's settings document is emptied with its revision raised, not deleted: on
    SQLite a group created next may get the deleted group's id, and the document's
    revision, which the decoded-settings and render caches key on with the id, must then
    not repeat for other contents."""
    access, group = await group_in_path(call, "device", "write")
    in_group = Device.group_id == group.id
    devices = await _count(
        call, select(Device.id).where(in_group, Device.status != DeviceStatus.RETIRED)
    )
    if devices:
        raise ApiError.conflict(f"{devices} device(s) are in this group; move them first")
    retired = list(await call.session.scalars(select(Device).where(in_group)))
    if await _count(call, select(Rollout.id).where(Rollout.group_id == group.id)):
        raise ApiError.conflict("a firmware rollout names this group; it stays as its record")
    key = str(group.id)
    targets = list(
        await call.session.scalars(
            select(FirmwareTarget).where(
                FirmwareTarget.scope == TargetScope.GROUP, FirmwareTarget.scope_key == key
            )
        )
    )
    details: dict[str, Any] = {
        "name": group.name,
        "firmware_targets": [f"{t.vendor} {t.model} {t.version}" for t in targets],
    }
    if retired:
        details["retired_devices"] = [device.id for device in retired]
    for device in retired:
        device.group_id = None
        device.revision += 1
    for target in targets:
        await call.session.delete(target)
    document = await call.session.scalar(
        select(SettingsDocument).where(
            SettingsDocument.scope == Scope.GROUP, SettingsDocument.scope_key == key
        )
    )
    if document is not None and document.data:
        document.data = {}
        document.revision += 1
        details["settings_cleared"] = True
    await call.session.delete(group)
    await call.session.flush()
    record(call, access, "group.delete", "device_group", group.id, details)


async def group_in_path(call: Call, resource: str, action: str) -> tuple[Access, DeviceGroup]:
    """The caller's access and the path's group, if the caller may do ``action``."""
    access = await require(call, call.params["tenant_id"], resource, action)
    group = await owned(
        call, DeviceGroup, call.params["group_id"], access.tenant.tenant_id, "device group"
    )
    return access, group


async def _name_free(call: Call, tenant_id: str, name: str) -> None:
    taken = await call.session.scalar(
        select(DeviceGroup.id).where(DeviceGroup.tenant_id == tenant_id, DeviceGroup.name == name)
    )
    if taken is not None:
        raise ApiError.conflict("a group of that name exists")


async def _count(call: Call, ids: Any) -> int:
    return await call.session.scalar(select(func.count()).select_from(ids.subquery())) or 0
