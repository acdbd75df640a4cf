"""What a poll needs to know about a device before it knows whether to render anything.

Trust (status, Digest password, issued client certificate, the tenant's legacy mode, the
MAC), the inputs of the firmware selection (tenant, group, vendor, model, a version the
device's own settings pin) and the configuration revision (the revisions of the five
settings documents and of the device row): one indexed query of plain columns through
``PointReads``. The documents themselves are read only when a file must be rendered
(``dls.devices.effective.settings_sources``), which the render cache makes rare.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, case, exists, func, null, or_, select
from sqlalchemy.orm import aliased

from dls.db.reads import Reader
from dls.devices.effective import config_revision, join_documents
from dls.devices.models import Device, DeviceStatus
from dls.firmware.engine import DeviceState
from dls.firmware.models import FirmwareTarget, RolloutDevice
from dls.tenancy.models import Tenant, WpiSecureMode

__all__ = ["DeviceFacts", "device_facts"]


class DeviceFacts(NamedTuple):  # one per poll: a tuple is the cheapest record to build
    id: int
    mac: str
    vendor: str
    model: str
    status: DeviceStatus
    tenant_id: str
    group_id: int | None
    user_id: int | None
    digest_password: str | None  # ciphertext
    client_certificate_sha256: str | None  # the device-CA certificate issued to it
    legacy_mac_only: bool  # the tenant's
    wpi_secure_mode: WpiSecureMode  # the tenant's
    pinned_version: str | None  # firmware.version in the device's own settings
    # Whether any firmware target names its vendor or a rollout has reached it: without
    # either (and without a pin) there is nothing to offer, and no need to ask.
    firmware_managed: bool
    revision: str  # as DeviceContext.revision


def _statement():  # type: ignore[no-untyped-def]
    base = select(Device).join(Tenant, Tenant.tenant_id == Device.tenant_id)
    base, docs = join_documents(base, "facts")
    return base.with_only_columns(
        Device.id,
        Device.mac,
        Device.vendor,
        Device.model,
        Device.status,
        Device.tenant_id,
        Device.group_id,
        Device.user_id,
        Device.digest_password,
        Device.client_certificate_sha256,
        Tenant.legacy_mac_only,
        Tenant.wpi_secure_mode,
        # SQLite's json_extract costs ~5 us even on NULL, and most devices have no
        # document of their own: a fifth of the whole query, skipped then.
        case(
            (docs[-1].data.is_(None), null()),
            else_=docs[-1].data[("firmware", "version")].as_string(),
        ),
        or_(
            exists().where(FirmwareTarget.vendor == Device.vendor),
            exists().where(
                RolloutDevice.device_id == Device.id, RolloutDevice.state != DeviceState.PENDING
            ),
        ),
        Device.revision,
        *(doc.revision for doc in docs),
        maintain_column_froms=True,
    ).where(Device.id == func.coalesce(_wanted_id(), bindparam("decoy", type_=Integer)))


def _wanted_id():  # type: ignore[no-untyped-def]
    """The id of the device with the MAC, looked up in the MAC index alone."""
    wanted = aliased(Device, name="wanted")
    return select(wanted.id).where(wanted.mac == bindparam("mac")).scalar_subquery()


_BY_MAC = _statement()


async def device_facts(reader: Reader, mac: str, decoy: int = 0) -> DeviceFacts | None:
    """The facts, read on the device path's own connection (a poll: no transaction) or
    in a session's transaction: a Core row, not the seven ORM objects ``load_context``
    builds.

    ``decoy``, the id of a registered device, is read in place of a MAC nobody registered,
    with the same joins, and dropped: an index miss alone answered 31-38 us sooner than
    a registered device's read over loopback, so a requester could have timed 404s to
    learn which MACs are registered (``bench/auth_timing.py``). The MAC is compared,
    never the decoy's facts returned.
    """
    for row in await reader.execute(_BY_MAC, {"mac": mac, "decoy": decoy}):
        facts = _facts(row)
        return facts if facts.mac == mac else None
    return None


def _facts(row: Any) -> DeviceFacts:
    *fields, managed, device_revision = row[:15]
    return DeviceFacts(
        *fields,
        firmware_managed=bool(managed),
        revision=config_revision(row[15:], device_revision),
    )
