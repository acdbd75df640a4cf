"""A device with everything its configuration depends on, loaded in one indexed query.

This is the device path's only read: the device row by MAC, its tenant, and the five
settings documents (system, tenant, group, user, device) by outer joins on unique keys.
The configuration revision is made of the documents' revisions and the device's own, so
it changes whenever anything the rendered files depend on changes, and costs no write.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dls.devices.inheritance import Level, Resolution, SettingsLayer, resolve
from dls.devices.layers import decode_layer, purpose
from dls.devices.models import Device, Scope, SettingsDocument
from dls.secretbox import SecretBox
from dls.tenancy.models import Tenant

__all__ = ["DeviceContext", "load_context", "resolve_settings"]

SYSTEM_KEY = "system"
_LEVELS = (Level.SYSTEM, Level.TENANT, Level.GROUP, Level.USER, Level.DEVICE)
_SCOPES = (Scope.SYSTEM, Scope.TENANT, Scope.GROUP, Scope.USER, Scope.DEVICE)


@dataclass(frozen=True, slots=True)
class DeviceContext:
    device: Device
    tenant: Tenant
    documents: tuple[SettingsDocument | None, ...]  # system, tenant, group, user, device

    @property
    def revision(self) -> str:
        """e.g. ``3.7.0.2.1-4``: document revisions by level, then the device row's."""
        parts = ".".join(str(doc.revision if doc else 0) for doc in self.documents)
        return f"{parts}-{self.device.revision}"


def _statement():  # type: ignore[no-untyped-def]
    docs = [aliased(SettingsDocument, name=f"doc_{scope.value}") for scope in _SCOPES]
    keys = (
        literal(SYSTEM_KEY),
        Device.tenant_id,
        Device.group_id,
        Device.user_id,
        Device.id,
    )
    statement = select(Device, Tenant, *docs).join(Tenant, Tenant.tenant_id == Device.tenant_id)
    for doc, scope, key in zip(docs, _SCOPES, keys, strict=True):
        # Keys are stored as text; the cast keeps the join on the unique (scope, key) index.
        statement = statement.outerjoin(
            doc,
            and_(doc.scope == scope, doc.scope_key == key.cast(SettingsDocument.scope_key.type)),
        )
    return statement


_BY_MAC = _statement()


async def load_context(
    session: AsyncSession, *, mac: str | None = None, device_id: int | None = None
) -> DeviceContext | None:
    if mac is not None:
        statement = _BY_MAC.where(Device.mac == mac)
    elif device_id is not None:
        statement = _BY_MAC.where(Device.id == device_id)
    else:
        raise ValueError("mac or device_id")
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    device, tenant, *documents = row
    return DeviceContext(device, tenant, tuple(documents))


def resolve_settings(context: DeviceContext, box: SecretBox | None) -> Resolution:
    """The device's effective settings; with ``box`` None, secrets read as the mask.

    The user's lines are moved to start at the device's ``user_line``: a user's line 1 is
    line 2 of a device where the user sits on the second line key.
    """
    layers: list[tuple[Level, SettingsLayer]] = []
    for level, scope, document in zip(_LEVELS, _SCOPES, context.documents, strict=True):
        if document is None:
            continue
        layer = decode_layer(document.data, box, purpose(scope.value, document.scope_key))
        if scope is Scope.USER and context.device.user_line != 1 and layer.lines:
            shift = context.device.user_line - 1
            layer = layer.model_copy(
                update={"lines": {index + shift: line for index, line in layer.lines.items()}}
            )
        layers.append((level, layer))
    return resolve(layers)
