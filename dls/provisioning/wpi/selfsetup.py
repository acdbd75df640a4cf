"""User self-setup: an unassigned phone presents a user's deployment PIN and is bound to them.

Our design after Unify's Cloud DLS (reference §15, all [I] except the item name): the
phone reports the PIN the user typed in the start-up item ``cloud-pin-value`` [D NODE
shows the item in start-up messages; its meaning is our guess]. If the PIN is valid and
self-setup is allowed for its user (the user's override, else the tenant's default), the
phone becomes a device of the user's tenant on the PIN's line, and the session carries
on as for any assigned phone. Otherwise nothing is bound, the refusal is audited, and the
phone is treated as unknown (CleanUp, no secrets).

A PIN has 10^8 values, so guessing is bounded three ways: per phone (MAC) failures in a
window, per PIN refused uses, and a per-process rate of PIN checks (the caller's).
A PIN is single-use; an admin regenerates it for another phone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from dls import audit
from dls.devices.models import Device, DeviceStatus, UnclaimedDevice
from dls.devices.unify import (
    MAX_PIN_REFUSALS,
    PIN_LOOKUP_PURPOSE,
    DeploymentPin,
    KeyedHash,
)
from dls.provisioning.wpi.phone import PhoneRecord
from dls.tenancy.models import Tenant, User
from dls.tenancy.service import effective_self_setup

__all__ = [
    "MAX_PHONE_FAILURES",
    "Outcome",
    "bind_with_pin",
]

MAX_PHONE_FAILURES = 5  # wrong PINs from one MAC per window
PHONE_FAILURE_WINDOW = dt.timedelta(hours=1)
_PIN = re.compile(r"[0-9]{4,16}")


@dataclass(frozen=True, slots=True)
class Outcome:
    bound: bool
    reason: str  # fixed text for logs and the audit entry


async def bind_with_pin(
    session: AsyncSession,
    *,
    pin: str,
    mac: str,
    phone: PhoneRecord,
    existing: Device | None,
    model: str | None,
    firmware: str | None,
    hasher: KeyedHash,
    now: dt.datetime,
    request_id: str,
    address: str | None,
) -> Outcome:
    """Bind the phone behind ``mac`` to the PIN's user, or say why not (and count it)."""
    if phone.pin_failures_since is None or now - phone.pin_failures_since > PHONE_FAILURE_WINDOW:
        phone.pin_failures, phone.pin_failures_since = 0, now
    if phone.pin_failures >= MAX_PHONE_FAILURES:
        return Outcome(False, "too many wrong PINs from this phone")
    candidate = pin.strip()
    row = None
    if _PIN.fullmatch(candidate):
        digest = hasher.digest(PIN_LOOKUP_PURPOSE, candidate)
        row = await session.scalar(select(DeploymentPin).where(DeploymentPin.lookup_hash == digest))
    if row is None or row.used_at is not None or row.expires_at <= now:
        phone.pin_failures += 1
        return Outcome(False, "unknown, used or expired PIN")
    if row.attempts >= MAX_PIN_REFUSALS:
        phone.pin_failures += 1
        return Outcome(False, "PIN refused too often; regenerate it")
    user = await session.get(User, row.user_id)
    tenant = await session.get(Tenant, row.tenant_id)
    if user is None or tenant is None or user.disabled:
        phone.pin_failures += 1
        return Outcome(False, "the PIN's user is disabled")

    def refuse(reason: str) -> Outcome:
        row.attempts += 1
        _audit(
            session, user, "device.self_setup_refused", mac, reason, row.line, request_id, address
        )
        return Outcome(False, reason)

    if existing is not None and (
        existing.tenant_id != row.tenant_id or existing.user_id is not None
    ):
        return refuse("the phone is registered elsewhere")
    if existing is not None and existing.vendor != "unify":
        return refuse("the MAC is registered as another vendor's device")
    if not effective_self_setup(tenant, user):
        return refuse("self-setup is not allowed for this user")

    device = existing
    if device is None:
        device = Device(
            mac=mac,
            vendor="unify",
            model=(model or "unknown")[:64],
            firmware_version=firmware[:64] if firmware else None,
            tenant_id=row.tenant_id,
            status=DeviceStatus.ASSIGNED,
            revision=1,
            first_seen=now,
        )
        session.add(device)
    else:
        device.revision += 1
    device.user_id = user.id
    device.user_line = row.line
    device.status = DeviceStatus.ASSIGNED
    device.last_address = address
    row.used_at, row.used_by_mac = now, mac
    phone.pin_failures = 0
    await session.execute(delete(UnclaimedDevice).where(UnclaimedDevice.mac == mac))
    await session.flush()
    _audit(session, user, "device.self_setup", mac, "bound", row.line, request_id, address, device)
    return Outcome(True, "bound")


def _audit(
    session: AsyncSession,
    user: User,
    action: str,
    mac: str,
    reason: str,
    line: int,
    request_id: str,
    address: str | None,
    device: Device | None = None,
) -> None:
    audit.record(
        session,
        actor_user_id=user.id,
        actor_tenant_id=user.tenant_id,
        target_tenant_id=user.tenant_id,
        via=audit.Via.DIRECT,
        action=action,
        object_type="device",
        object_id=device.id if device is not None else mac,
        changes={"mac": mac, "user_id": user.id, "line": line, "result": reason},
        request_id=request_id,
        source_ip=address,
    )
