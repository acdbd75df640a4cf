"""Settings documents per level, device groups, and a device's effective configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from dls.api.access import device_in_path, owned, record, require, require_operator
from dls.api.common import api
from dls.api.groups import group_in_path
from dls.api.routing import MAX_ROW_ID, ApiError, Call, RequestModel
from dls.devices.effective import SYSTEM_KEY, DeviceContext, load_context, resolve_settings
from dls.devices.inheritance import ResolutionError, SettingsLayer, effective_view
from dls.devices.layers import encode_layer, masked_layer_json, purpose
from dls.devices.models import Device, DeviceGroup, Scope, SettingsDocument
from dls.firmware.delivery import explain
from dls.provisioning.files.preview import render_previews
from dls.provisioning.impact import CHECK_LIMIT, Impact, settings_change_impact
from dls.tenancy.models import User
from dls.tenancy.policy import Access

TAG = "device settings"
BROKEN_SHOWN = 10  # devices a refused change names in its details


class SettingsOut(BaseModel):
    scope: Scope
    scope_key: str
    revision: int = Field(description="0 when nothing is stored at this level.")
    settings: dict[str, Any] = Field(description="The sparse document; secrets masked.")


class SettingsPut(RequestModel):
    settings: dict[str, Any] = Field(
        description="A sparse settings document (see the README). Absent fields inherit, "
        "null clears what levels above set; a secret sent back as ******** keeps its value."
    )
    revision: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ROW_ID,
        description="The revision the change is based on (as read with GET; 0: nothing "
        "stored yet). When given and another change landed since, the PUT is refused with "
        "409 and changes nothing, so two admins editing the same level cannot undo each "
        "other's work unseen.",
    )
    force: bool = Field(
        default=False,
        description="Store the document even when devices below the level that render now "
        "would no longer render with it (otherwise 422 breaks_devices, naming them). Up to "
        f"{CHECK_LIMIT} devices are checked, drawn at random when more are affected.",
    )


class EffectiveRow(BaseModel):
    path: str
    value: Any
    level: str | None = Field(description="system, tenant, group, user, device; null: default.")
    source: str | None
    secret: bool


class FilePreview(BaseModel):
    file: str
    content: str = Field(description="What the device will fetch, secrets masked.")


class FirmwareCandidate(BaseModel):
    source: str = Field(description="pin, rollout, group, tenant or system.")
    version: str
    image_id: int | None = Field(description="null: no image of this version is imported.")
    rollout_id: int | None
    rollout_state: str | None


class EffectiveFirmware(BaseModel):
    version: str | None = Field(description="What the device should run; null: no target.")
    source: str | None = Field(description="pin (its own setting), rollout, group, tenant, system.")
    image_id: int | None
    file_name: str | None
    sha256: str | None
    rollout_id: int | None
    rollout_state: str | None
    reported_version: str | None = Field(description="What the device last reported.")
    candidates: list[FirmwareCandidate] = Field(description="Every level that names a version.")
    problems: list[str]


class EffectiveOut(BaseModel):
    device_id: int
    revision: str
    values: list[EffectiveRow]
    files: list[FilePreview]
    problems: list[str] = Field(description="Why the settings do not resolve, if they don't.")
    firmware: EffectiveFirmware = Field(description="The firmware version that applies.")


async def _firmware(call: Call, context: DeviceContext) -> EffectiveFirmware:
    explained = await explain(call.session, context.device, context.documents, call.now)
    chosen = explained.selection
    image = chosen.image if chosen else None
    return EffectiveFirmware(
        version=chosen.version if chosen else None,
        source=chosen.source.value if chosen else None,
        image_id=image.id if image else None,
        file_name=image.file_name if image else None,
        sha256=image.sha256 if image else None,
        rollout_id=chosen.rollout_id if chosen else None,
        rollout_state=chosen.rollout_state.value if chosen and chosen.rollout_state else None,
        reported_version=context.device.firmware_version,
        candidates=[
            FirmwareCandidate(
                source=candidate.source.value,
                version=candidate.version,
                image_id=candidate.image.id if candidate.image else None,
                rollout_id=candidate.rollout_id,
                rollout_state=candidate.state.value if candidate.state else None,
            )
            for candidate in explained.candidates
        ],
        problems=list(explained.problems),
    )


async def _document(call: Call, scope: Scope, key: str) -> SettingsDocument | None:
    return await call.session.scalar(
        select(SettingsDocument).where(
            SettingsDocument.scope == scope, SettingsDocument.scope_key == key
        )
    )


def _out(scope: Scope, key: str, document: SettingsDocument | None) -> SettingsOut:
    return SettingsOut(
        scope=scope,
        scope_key=key,
        revision=document.revision if document else 0,
        settings=masked_layer_json(document.data) if document else {},
    )


# Where a PUT writes: the caller's access (None: the operator's system level) and the
# document's key, decided from the rows of the transaction it is given (Call.writing()
# decides it again before writing).
Target = Callable[[Call], Awaitable[tuple[Access | None, str]]]


async def _put(call: Call, scope: Scope, target: Target) -> SettingsOut:
    """Validate, check what the change does to the devices below the level (outside the
    write lock: it resolves and renders up to a few hundred devices), then store it in a
    short transaction of its own."""
    body: SettingsPut = call.body
    access, key = await target(call)
    layer = _validated(body.settings)
    document = await _document(call, scope, key)
    _check_revision(body, document)
    if not body.force:
        data = _encoded(call, layer, scope, key, document)
        impact = await settings_change_impact(call.session, call.services, scope, key, data)
        if impact.broken:
            raise breaks_devices(impact)
    async with call.writing() as writing:
        access, key = await target(writing)
        document = await _document(writing, scope, key)
        _check_revision(body, document)
        data = _encoded(writing, layer, scope, key, document)
        if document is None:
            document = SettingsDocument(scope=scope, scope_key=key, data=data, revision=1)
            writing.session.add(document)
        elif document.data != data:
            document.data = data
            document.revision += 1
        await writing.session.flush()
        # The audit entry holds the masked document: what was set, never a secret.
        record(
            writing,
            access,
            "settings.put",
            f"settings.{scope.value}",
            key,
            {"settings": masked_layer_json(data), "revision": document.revision},
            target_tenant_id=access.tenant.tenant_id if access else None,
        )
        return _out(scope, key, document)


def _in_tenant(model: Any = None, param: str = "", what: str = "") -> Target:
    """The tenant's document, or that of its object ``model`` named by the path's
    ``param`` (404 when it is another tenant's)."""

    async def target(call: Call) -> tuple[Access | None, str]:
        access = await require(call, call.params["tenant_id"], "settings", "write")
        if model is None:
            return access, access.tenant.tenant_id
        owner = await owned(call, model, call.params[param], access.tenant.tenant_id, what)
        return access, str(owner.id)

    return target


def _validated(settings: dict[str, Any]) -> SettingsLayer:
    try:
        return SettingsLayer.model_validate(settings)
    except ValidationError as exc:
        raise ApiError.refused(exc, within="settings.") from None


def _check_revision(body: SettingsPut, document: SettingsDocument | None) -> None:
    stored = document.revision if document else 0
    if body.revision is not None and body.revision != stored:
        raise ApiError.conflict(
            f"these settings changed since revision {body.revision} (now {stored}); read them again"
        )


def _encoded(
    call: Call, layer: SettingsLayer, scope: Scope, key: str, document: SettingsDocument | None
) -> dict[str, Any]:
    try:
        return encode_layer(
            layer, call.services.box, purpose(scope.value, key), document.data if document else None
        )
    except ValueError as exc:
        raise ApiError.invalid("settings", str(exc)) from None


def breaks_devices(impact: Impact) -> ApiError:
    """The answer to a change that would leave devices without a configuration."""
    first = impact.broken[0]
    shown = impact.broken[:BROKEN_SHOWN]
    sampled = (
        f" (a sample of {impact.checked} of {impact.affected})"
        if impact.checked < impact.affected
        else ""
    )
    return ApiError(
        422,
        "breaks_devices",
        f"with this change {len(impact.broken)} of the {impact.checked} devices checked"
        f"{sampled} would no longer get a configuration, e.g. device {first.device_id} "
        f"({first.mac}): {first.problem.splitlines()[0]}; nothing was changed (send "
        '"force": true to make it anyway)',
        details=[{"device_id": b.device_id, "mac": b.mac, "problem": b.problem} for b in shown],
    )


# --- system -----------------------------------------------------------------------------


@api.route(
    "GET",
    "/system/settings",
    summary="System default settings (operator)",
    tag=TAG,
    response=SettingsOut,
)
async def get_system_settings(call: Call) -> SettingsOut:
    require_operator(call)
    return _out(Scope.SYSTEM, SYSTEM_KEY, await _document(call, Scope.SYSTEM, SYSTEM_KEY))


@api.route(
    "PUT",
    "/system/settings",
    summary="Replace the system default settings (operator)",
    tag=TAG,
    body=SettingsPut,
    response=SettingsOut,
    writes=False,  # checks the devices below first, then writes in Call.writing()
)
async def put_system_settings(call: Call) -> SettingsOut:
    async def target(call: Call) -> tuple[Access | None, str]:
        require_operator(call)
        return None, SYSTEM_KEY

    return await _put(call, Scope.SYSTEM, target)


# --- tenant, group, user, device ----------------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/settings",
    summary="A tenant's settings",
    tag=TAG,
    response=SettingsOut,
)
async def get_tenant_settings(call: Call) -> SettingsOut:
    access = await require(call, call.params["tenant_id"], "settings", "read")
    key = access.tenant.tenant_id
    return _out(Scope.TENANT, key, await _document(call, Scope.TENANT, key))


@api.route(
    "PUT",
    "/tenants/{tenant_id}/settings",
    summary="Replace a tenant's settings",
    tag=TAG,
    body=SettingsPut,
    response=SettingsOut,
    writes=False,  # checks the devices below first, then writes in Call.writing()
)
async def put_tenant_settings(call: Call) -> SettingsOut:
    return await _put(call, Scope.TENANT, _in_tenant())


@api.route(
    "GET",
    "/tenants/{tenant_id}/groups/{group_id}/settings",
    summary="A device group's settings",
    tag=TAG,
    response=SettingsOut,
)
async def get_group_settings(call: Call) -> SettingsOut:
    _, group = await group_in_path(call, "settings", "read")
    return _out(Scope.GROUP, str(group.id), await _document(call, Scope.GROUP, str(group.id)))


@api.route(
    "PUT",
    "/tenants/{tenant_id}/groups/{group_id}/settings",
    summary="Replace a device group's settings",
    tag=TAG,
    body=SettingsPut,
    response=SettingsOut,
    writes=False,  # checks the devices below first, then writes in Call.writing()
)
async def put_group_settings(call: Call) -> SettingsOut:
    return await _put(call, Scope.GROUP, _in_tenant(DeviceGroup, "group_id", "device group"))


@api.route(
    "GET",
    "/tenants/{tenant_id}/users/{user_id}/settings",
    summary="A user's settings (typically the user's line)",
    tag=TAG,
    response=SettingsOut,
)
async def get_user_settings(call: Call) -> SettingsOut:
    access = await require(call, call.params["tenant_id"], "settings", "read")
    user = await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user")
    return _out(Scope.USER, str(user.id), await _document(call, Scope.USER, str(user.id)))


@api.route(
    "PUT",
    "/tenants/{tenant_id}/users/{user_id}/settings",
    summary="Replace a user's settings",
    tag=TAG,
    body=SettingsPut,
    response=SettingsOut,
    writes=False,  # checks the devices below first, then writes in Call.writing()
)
async def put_user_settings(call: Call) -> SettingsOut:
    return await _put(call, Scope.USER, _in_tenant(User, "user_id", "user"))


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}/settings",
    summary="A device's own settings",
    tag=TAG,
    response=SettingsOut,
)
async def get_device_settings(call: Call) -> SettingsOut:
    _, device = await device_in_path(call, "settings", "read")
    return _out(Scope.DEVICE, str(device.id), await _document(call, Scope.DEVICE, str(device.id)))


@api.route(
    "PUT",
    "/tenants/{tenant_id}/devices/{device_id}/settings",
    summary="Replace a device's own settings",
    tag=TAG,
    body=SettingsPut,
    response=SettingsOut,
    writes=False,  # checks the devices below first, then writes in Call.writing()
)
async def put_device_settings(call: Call) -> SettingsOut:
    return await _put(call, Scope.DEVICE, _in_tenant(Device, "device_id", "device"))


@api.route(
    "GET",
    "/tenants/{tenant_id}/devices/{device_id}/effective-config",
    summary="Each resolved value with the level it came from, and a preview of every "
    "file the device will fetch (secrets masked)",
    tag=TAG,
    response=EffectiveOut,
)
async def effective_config(call: Call) -> EffectiveOut:
    _, device = await device_in_path(call, "settings", "read")
    context = await load_context(call.session, device_id=device.id)
    assert context is not None
    try:
        resolution = resolve_settings(context, None)
    except ResolutionError as exc:
        return EffectiveOut(
            device_id=device.id,
            revision=context.revision,
            values=[],
            files=[],
            problems=str(exc).splitlines(),
            firmware=await _firmware(call, context),
        )
    values = [
        EffectiveRow(
            path=row.path,
            value=row.value,
            level=row.level.name.lower() if row.level else None,
            source=row.source,
            secret=row.secret,
        )
        for row in effective_view(resolution)
    ]
    previews = render_previews(call.services, context, resolution.settings)
    return EffectiveOut(
        device_id=device.id,
        revision=context.revision,
        values=values,
        files=[FilePreview(file=name, content=text) for name, text in previews],
        problems=[],
        firmware=await _firmware(call, context),
    )
