"""Which devices a settings change would leave without a configuration they can fetch.

A PUT replaces a level's whole document. One meant to change a key but sent without the
tenant's registrar makes every device below that level fail to render: from then on the
phones get 404 (they keep running their last configuration, but no change reaches them
and a new phone cannot start), and only a metric and a log line say so. Before a change
is stored, the admin API resolves and renders the devices below the level with the new
document in place of the stored one; devices that rendered before and would not after
refuse the change, unless the admin insists. Moving one device (its user, line, group or
model) asks the same of that device (``device_problem``, before and after).

Bounded: at most CHECK_LIMIT devices, drawn at random when more are affected. A mistake
at a level fails every device below it alike, so any of them shows it; a device that
fails for reasons of its own may be missed by the sample, and the device path reports it
as before (``dls_device_files_total{outcome="unrendered"}`` and one warning). Secrets are
never decrypted: resolved without the key they read as the mask, which renders like any
password. Common files (system settings only, no secrets) are not checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.devices.effective import (
    SCOPES,
    DecodedLayers,
    DocumentRow,
    StoredLayer,
    document_columns,
    document_rows,
    join_documents,
    load_context,
    resolve_documents,
)
from dls.devices.inheritance import ResolutionError
from dls.devices.models import Device, DeviceStatus, Scope
from dls.provisioning.files.handler import PROVISIONING_PREFIX
from dls.provisioning.files.profiles import VendorProfile
from dls.provisioning.files.render import RenderError, RenderRequest, render, rendered_files
from dls.provisioning.files.vocabulary import FileScope
from dls.services import Services

__all__ = ["CHECK_LIMIT", "Broken", "Impact", "device_problem", "settings_change_impact"]

CHECK_LIMIT = 200
YIELD_EVERY = 4  # devices checked (~2 ms) between two turns of the loop's other work
PROPOSED = -1  # the revision the new document goes by while it is checked (stored ones are >= 1)


@dataclass(frozen=True, slots=True)
class Broken:
    """A device that renders now and would not with the change."""

    device_id: int
    mac: str
    problem: str


@dataclass(frozen=True, slots=True)
class Impact:
    affected: int  # devices below the level, retired ones aside
    checked: int
    broken: list[Broken]


async def settings_change_impact(
    session: AsyncSession, services: Services, scope: Scope, key: str, data: dict[str, Any]
) -> Impact:
    """What storing ``data`` (as stored: secrets encrypted) as the (``scope``, ``key``)
    document would do to the devices below it, checked on up to CHECK_LIMIT of them."""
    below = _below(scope, key)
    affected = await session.scalar(select(func.count()).select_from(Device).where(below)) or 0
    if not affected:
        return Impact(0, 0, [])
    sample = select(Device.id).where(below)
    if affected > CHECK_LIMIT:
        sample = sample.order_by(func.random()).limit(CHECK_LIMIT)
    statement, docs = join_documents(select(Device), "impact")
    statement = statement.with_only_columns(
        Device.id,
        Device.mac,
        Device.vendor,
        Device.model,
        Device.user_line,
        *document_columns(docs),
    ).where(Device.id.in_(sample.scalar_subquery()))
    level = SCOPES.index(scope)
    profiles, base_url = services.catalog.files, _base_url(services)
    decoded = DecodedLayers()  # documents shared by the devices (and before and after), once
    broken: list[Broken] = []
    checked = 0
    for row in await session.execute(statement):
        device_id, mac, vendor, model, user_line, *stored = row
        before = document_rows(stored)
        after = list(before)
        after[level] = DocumentRow(key, PROPOSED, data)
        device = _Device(mac, vendor, model, user_line, profiles.get(vendor), base_url)
        problem = device.problem(after, decoded)
        if problem is not None and device.problem(before, decoded) is None:
            broken.append(Broken(device_id, mac, problem))
        checked += 1
        if checked % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # an admin's check must not stall the phones' polls
    return Impact(affected, checked, sorted(broken, key=lambda b: b.device_id))


async def device_problem(session: AsyncSession, services: Services, device_id: int) -> str | None:
    """Why the device, as it stands in ``session`` (changes flushed), would get no
    configuration; None when it would. For a change to one device's assignment (user,
    line, group, model): asked before and after it."""
    context = await load_context(session, device_id=device_id)
    if context is None:
        return None
    device = context.device
    profile = services.catalog.files.get(device.vendor)
    checked = _Device(
        device.mac, device.vendor, device.model, device.user_line, profile, _base_url(services)
    )
    return checked.problem(context.documents, DecodedLayers())


def _base_url(services: Services) -> str:
    return services.settings.device_url + PROVISIONING_PREFIX


def _below(scope: Scope, key: str) -> ColumnElement[bool]:
    live = Device.status != DeviceStatus.RETIRED
    if scope is Scope.SYSTEM:
        return live
    if scope is Scope.TENANT:
        return live & (Device.tenant_id == key)
    column = {Scope.GROUP: Device.group_id, Scope.USER: Device.user_id, Scope.DEVICE: Device.id}
    return live & (column[scope] == int(key))


@dataclass(frozen=True, slots=True)
class _Device:
    mac: str
    vendor: str
    model: str
    user_line: int
    profile: VendorProfile | None  # None: a WPI phone, configured by items, not files
    base_url: str

    def problem(
        self,
        documents: Sequence[StoredLayer | None],
        decoded: DecodedLayers,
    ) -> str | None:
        """Why the device's settings do not resolve or its own files do not render."""
        try:
            settings = resolve_documents(documents, self.user_line, None, decoded).settings
        except ResolutionError as exc:
            return str(exc)
        model = self.profile.model(self.model) if self.profile else None
        if self.profile is None or model is None:
            return None  # not served as files: resolving is all there is to check
        for name, spec in rendered_files(self.profile, model, self.mac):
            if spec.scope is not FileScope.DEVICE:
                continue  # common files carry system settings alone
            try:
                render(
                    RenderRequest(
                        self.profile, model, spec, settings, self.mac, base_url=self.base_url
                    )
                )
            except RenderError as exc:
                return f"{name}: {exc}"
        return None
