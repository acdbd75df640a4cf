"""Registering devices, assigning them, sending them out, retiring them.

The status follows the device's life: unassigned -> assigned (a user is set) -> sent to
user (shipped) -> provisioned (first successful fetch) -> active (fetches again); retired
ends it. Changes that shape the rendered configuration bump ``Device.revision``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.devices.models import Device, DeviceGroup, DeviceStatus, UnclaimedDevice
from dls.errors import DomainError
from dls.secretbox import SecretBox
from dls.tenancy.models import Tenant, User

__all__ = [
    "Assignment",
    "ImportRow",
    "ModelLookup",
    "create_device",
    "digest_purpose",
    "import_csv",
    "normalise_mac",
    "parse_csv",
    "retire",
    "send_to_user",
    "set_digest_password",
    "update_assignment",
]

_MAC_SEPARATORS = re.compile(r"[:\-.\s]")
_MAC = re.compile(r"^[0-9a-f]{12}$")
MAX_IMPORT_ROWS = 5000
IMPORT_COLUMNS = ("mac", "model", "user", "line")  # their order without a header
_SNIFF_CHARS = 4096  # of the text, for its separator
DIGEST_PASSWORD_BYTES = 18  # 24 URL-safe characters

# (vendor, model) -> (vendor, canonical model name, line count), or None if not validated.
ModelLookup = Callable[[str, str], "tuple[str, str, int] | None"]


def normalise_mac(text: str) -> str | None:
    """12 lower-case hex digits from any usual spelling, or None."""
    mac = _MAC_SEPARATORS.sub("", text).lower()
    return mac if _MAC.match(mac) and mac != "000000000000" else None


def digest_purpose(device_id: int) -> str:
    return f"device:{device_id}:digest"


@dataclass(slots=True)
class Assignment:
    user_id: int | None = None
    user_line: int = 1
    group_id: int | None = None


async def _check_assignment(
    session: AsyncSession, tenant: Tenant, assignment: Assignment, lines: int
) -> None:
    if assignment.user_id is not None:
        user = await session.get(User, assignment.user_id)
        if user is None or user.tenant_id != tenant.tenant_id:
            raise DomainError("user_id", "no such user in this tenant")
    if assignment.group_id is not None:
        group = await session.get(DeviceGroup, assignment.group_id)
        if group is None or group.tenant_id != tenant.tenant_id:
            raise DomainError("group_id", "no such device group in this tenant")
    if not 1 <= assignment.user_line <= lines:
        raise DomainError("user_line", f"this model has lines 1 to {lines}")


async def create_device(
    session: AsyncSession,
    tenant: Tenant,
    *,
    mac: str,
    vendor: str,
    model: str,
    assignment: Assignment,
    lookup: ModelLookup,
) -> tuple[Device, dict[str, Any]]:
    """Register a device; a retired device's MAC can be registered again."""
    normalised = normalise_mac(mac)
    if normalised is None:
        raise DomainError("mac", "12 hex digits, with or without separators")
    found = lookup(vendor, model)
    if found is None:
        raise DomainError("model", f"{vendor} {model} is not a validated model")
    vendor, model, lines = found
    await _check_assignment(session, tenant, assignment, lines)
    device = await session.scalar(select(Device).where(Device.mac == normalised))
    if device is not None and device.status is not DeviceStatus.RETIRED:
        # Says nothing about which tenant holds it.
        raise DomainError("mac", "already registered", conflict=True)
    if device is None:
        device = Device(mac=normalised)
        session.add(device)
    else:
        device.revision += 1
        device.retired_at = device.shipped_at = device.shipment_ref = None
        # Its credentials were the previous holder's.
        device.digest_password = None
        device.client_certificate_sha256 = device.client_certificate_not_after = None
    device.vendor, device.model, device.tenant_id = vendor, model, tenant.tenant_id
    device.user_id = assignment.user_id
    device.user_line = assignment.user_line
    device.group_id = assignment.group_id
    device.status = DeviceStatus.ASSIGNED if assignment.user_id else DeviceStatus.UNASSIGNED
    await session.flush()
    unclaimed = await session.get(UnclaimedDevice, normalised)
    if unclaimed is not None:
        await session.delete(unclaimed)
    return device, {
        "mac": normalised,
        "vendor": vendor,
        "model": model,
        "user_id": assignment.user_id,
        "user_line": assignment.user_line,
        "group_id": assignment.group_id,
    }


async def update_assignment(
    session: AsyncSession,
    tenant: Tenant,
    device: Device,
    values: dict[str, Any],
    lookup: ModelLookup,
) -> dict[str, Any]:
    """Change user, line, group or model; returns the changes for the audit entry."""
    if device.status is DeviceStatus.RETIRED:
        raise DomainError("status", "a retired device cannot be changed; register it again")
    lines = 64
    if "model" in values:
        found = lookup(device.vendor, values["model"])
        if found is None:
            raise DomainError("model", f"{device.vendor} {values['model']} is not validated")
        values["model"], lines = found[1], found[2]
    else:
        found = lookup(device.vendor, device.model)
        lines = found[2] if found else lines
    merged = Assignment(
        user_id=values.get("user_id", device.user_id),
        user_line=values.get("user_line", device.user_line),
        group_id=values.get("group_id", device.group_id),
    )
    await _check_assignment(session, tenant, merged, lines)
    changes: dict[str, Any] = {}
    for name, value in values.items():
        old = getattr(device, name)
        if old != value:
            setattr(device, name, value)
            changes[name] = {"old": old, "new": value}
    if changes:
        device.revision += 1
        if device.user_id is None and device.status in (
            DeviceStatus.ASSIGNED,
            DeviceStatus.SENT_TO_USER,
        ):
            device.status = DeviceStatus.UNASSIGNED
        elif device.user_id is not None and device.status is DeviceStatus.UNASSIGNED:
            device.status = DeviceStatus.ASSIGNED
    return changes


def send_to_user(device: Device, now: dt.datetime, shipment_ref: str | None) -> dict[str, Any]:
    if device.user_id is None:
        raise DomainError("user_id", "assign a user before sending the device")
    if device.status not in (DeviceStatus.ASSIGNED, DeviceStatus.SENT_TO_USER):
        raise DomainError("status", f"a device that is {device.status.value} is not sent")
    device.status = DeviceStatus.SENT_TO_USER
    device.shipped_at = now
    device.shipment_ref = shipment_ref
    return {"status": DeviceStatus.SENT_TO_USER, "shipment_ref": shipment_ref}


def retire(device: Device, now: dt.datetime) -> dict[str, Any]:
    if device.status is DeviceStatus.RETIRED:
        return {}
    old = device.status
    device.status = DeviceStatus.RETIRED
    device.retired_at = now
    device.revision += 1
    return {"status": {"old": old, "new": DeviceStatus.RETIRED}}


def set_digest_password(device: Device, box: SecretBox, password: str | None) -> str:
    """Set (or generate) the device's HTTP Digest password; return it to show once."""
    chosen = password or secrets.token_urlsafe(DIGEST_PASSWORD_BYTES)
    device.digest_password = box.encrypt(chosen, digest_purpose(device.id))
    return chosen


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    mac: str
    model: str
    user: str
    line: int | None
    error: str | None = None


def parse_csv(text: str) -> list[ImportRow]:
    """Rows of mac, model, user, line, as spreadsheets save them: separated by commas,
    semicolons (Excel writes the locale's list separator, a semicolon in much of Europe)
    or tabs, with or without the byte-order mark of Excel's "CSV UTF-8", and with an
    optional header row, which may name the columns in any order. Malformed rows carry
    an error; a header naming an unknown column refuses the whole import."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text), _dialect(text))
    columns = dict(zip(IMPORT_COLUMNS, range(len(IMPORT_COLUMNS)), strict=True))
    rows: list[ImportRow] = []
    first = True
    for number, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if first and "mac" in (f.strip().lower() for f in fields):
            columns = _header(fields)
            first = False
            continue
        first = False
        if len(rows) >= MAX_IMPORT_ROWS:
            raise DomainError("csv", f"at most {MAX_IMPORT_ROWS} rows per import")
        cells = [f.strip() for f in fields]
        value = {name: cells[i] if i < len(cells) else "" for name, i in columns.items()}
        line = value.get("line", "")
        error = None
        if len(fields) > max(columns.values()) + 1:
            error = f"expected {','.join(columns)}"
        elif line and not (line.isascii() and line.isdigit() and len(line) <= 4):
            # str.isdigit also takes "²", which int() refuses, as it does 4,300 digits
            error = "line must be a number"
        rows.append(
            ImportRow(
                number,
                value["mac"],
                value["model"],
                value.get("user", ""),
                int(line) if line and error is None else None,
                error,
            )
        )
    return rows


def _dialect(text: str) -> type[csv.Dialect]:
    """The separator the text uses, as the csv module's sniffer reads it from the first
    lines; a comma when it cannot tell (a single column)."""
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _header(fields: list[str]) -> dict[str, int]:
    """Column name -> position, from a header row."""
    names = [f.strip().lower() for f in fields]
    unknown = [name for name in names if name and name not in IMPORT_COLUMNS]
    if unknown:
        raise DomainError(
            "csv", f"unknown column {unknown[0]!r}; the columns are {', '.join(IMPORT_COLUMNS)}"
        )
    if "model" not in names:
        raise DomainError("csv", "the header names no model column")
    if len(set(filter(None, names))) != len(list(filter(None, names))):
        raise DomainError("csv", "the header names a column twice")
    return {name: position for position, name in enumerate(names) if name}


@dataclass(frozen=True, slots=True)
class ImportResult:
    row: int
    mac: str
    outcome: str  # created, unchanged, error
    device_id: int | None = None
    error: str | None = None


async def import_csv(
    session: AsyncSession,
    tenant: Tenant,
    vendor_of: Callable[[str], str | None],
    rows: list[ImportRow],
    lookup: ModelLookup,
) -> list[ImportResult]:
    """Create each row's device in a savepoint, so one bad row does not undo the others."""
    results = []
    for row in rows:
        if row.error:
            results.append(ImportResult(row.row, row.mac, "error", error=row.error))
            continue
        vendor = vendor_of(row.model)
        user_id = None
        try:
            if vendor is None:
                raise DomainError("model", f"{row.model} is not a validated model")
            if row.user:
                user = await session.scalar(
                    select(User).where(
                        User.username == row.user, User.tenant_id == tenant.tenant_id
                    )
                )
                if user is None:
                    raise DomainError("user", f"no user {row.user} in this tenant")
                user_id = user.id
            async with session.begin_nested():
                device, _ = await create_device(
                    session,
                    tenant,
                    mac=row.mac,
                    vendor=vendor,
                    model=row.model,
                    assignment=Assignment(user_id=user_id, user_line=row.line or 1),
                    lookup=lookup,
                )
        except DomainError as error:
            results.append(ImportResult(row.row, row.mac, "error", error=str(error)))
            continue
        results.append(ImportResult(row.row, device.mac, "created", device.id))
    return results
