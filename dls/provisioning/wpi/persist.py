"""The engine's decision turned into changes of the phone's records, for one message.

The engine only returns effects. Here they change the records the message read, the
phone's row and its job rows (``dls.provisioning.wpi.phone``), each effect as
``dls.provisioning.wpi.store`` says; the caller writes the changed records together,
after everything is decided, as one burst of guarded statements.

A few effects need the database itself, and so a transaction: local changes to audit, a
deployment status to file on the job it names (the device's recent deployments are read
for it), a software job that just ended failed to report to its rollout, an unknown
phone to record as unclaimed. Without a transaction they raise ``NeedsTransaction``
before anything is written, and the message is handled again in one.

The session lives on the phone's row: kept with an idle deadline while the interaction
goes on (with a new cookie unless the phone presented the one of that session), and
dropped after CleanUp.

What must happen once, and only once the writes are in, is handed back instead of done:
warnings go to ``warn``, which the caller defers, and the session tokens opened and
closed (for admission) and the provisioning-ledger fetch are returned. So a message
handled again after a conflict logs and notes them once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from dls.devices.facts import DeviceFacts
from dls.devices.unify import JobKind, JobState, KeyedHash
from dls.firmware.runtime import FirmwareRuntime
from dls.logs import REQUEST_ID
from dls.provisioning.ledger import Fetch
from dls.provisioning.wpi.effects import (
    Effect,
    JobStatus,
    ProtocolViolation,
    RecordDeploymentStatus,
    RecordLocalChanges,
    RecordUnknownDevice,
    StoreInventory,
    UpdateJob,
)
from dls.provisioning.wpi.engine import Decision
from dls.provisioning.wpi.firmware import install_failed, report_install_failure
from dls.provisioning.wpi.items import SOFTWARE_VERSION
from dls.provisioning.wpi.messages import Action, ReasonForContact, ReplyStatus, WorkpointMessage
from dls.provisioning.wpi.phone import JobRow, PhoneRecord, deployment_jobs
from dls.provisioning.wpi.runtime import SESSION_IDLE_TIMEOUT, WpiRuntime
from dls.provisioning.wpi.secure import GOTO_SECURE_MODE
from dls.provisioning.wpi.session import SessionState
from dls.provisioning.wpi.snapshot import DeviceSnapshot
from dls.provisioning.wpi.store import (
    CONTACT_ME_URI,
    NeedsTransaction,
    apply_job_update,
    merge_inventory,
    record_deployment_status,
    record_local_changes,
    record_unclaimed,
    reported_value,
    require_transaction,
)

__all__ = [
    "Warn",
    "apply_effects",
    "end_session",
    "keep_session",
    "ledger_fetch",
    "mark_seen",
    "record_unknown",
    "remember_bootstrap_refusal",
    "token_hash",
]

LEDGER_FILE = "WPI"  # what the ledger shows as "fetched" for a WPI configuration check
SESSION_IDLE = dt.timedelta(seconds=SESSION_IDLE_TIMEOUT)


class Warn(Protocol):
    """Where a warning goes; the caller logs it once the message's writes are in."""

    def __call__(self, reason: str, /, **fields: object) -> None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def apply_effects(
    effects: Sequence[Effect],
    device: DeviceFacts,
    phone: PhoneRecord,
    jobs: list[JobRow],
    *,
    session: AsyncSession | None,
    firmware: FirmwareRuntime,
    hasher: KeyedHash,
    now: dt.datetime,
    warn: Warn,
) -> None:
    """Change ``phone`` and ``jobs`` (the rows the message loaded) as ``effects`` say.

    Filing a deployment status reads the device's recent deployments; those not loaded
    are added to ``jobs``, to be written back with the others.
    """
    if session is None and any(
        isinstance(effect, RecordLocalChanges | RecordDeploymentStatus) for effect in effects
    ):
        raise NeedsTransaction
    by_id = {str(row.id): row for row in jobs}
    ended: list[tuple[JobRow, JobState]] = []  # jobs that may have just failed
    for effect in effects:
        match effect:
            case StoreInventory(items=items, complete=complete):
                phone.inventory = merge_inventory(
                    phone.inventory,
                    items,
                    complete=complete,
                    hasher=hasher,
                    mac=phone.mac,
                )
                uri = reported_value(items, CONTACT_ME_URI)
                if uri is not None:
                    phone.contact_me_uri = uri[:255]
            case UpdateJob():
                row = by_id.get(effect.job_id)
                if row is None:
                    continue
                ended.append((row, row.state))
                apply_job_update(row, effect, now)
                if row.kind is JobKind.FACTORY_RESET and effect.status is JobStatus.ACCEPTED:
                    # The phone forgets everything, its secure-mode certificate included.
                    phone.secure_since, phone.inventory, phone.secure_refused = (
                        None,
                        None,
                        False,
                    )
            case RecordLocalChanges():
                record_local_changes(require_transaction(session), device, effect, REQUEST_ID.get())
            case RecordDeploymentStatus():
                filed = await _deployment_status(session, device, effect, jobs, now, warn)
                if filed is not None:
                    ended.append(filed)
            case ProtocolViolation(reason=reason):
                warn("WPI protocol violation; session ended", mac=phone.mac, reason=reason[:100])
            case _:
                pass
    for row, before in ended:
        if install_failed(row, before):
            await report_install_failure(firmware, require_transaction(session), row, before, now)


async def _deployment_status(
    session: AsyncSession | None,
    device: DeviceFacts,
    status: RecordDeploymentStatus,
    jobs: list[JobRow],
    now: dt.datetime,
    warn: Warn,
) -> tuple[JobRow, JobState] | None:
    """File one file's result on its job; a failed firmware image fails the install."""
    loaded = {row.id: row for row in jobs}
    recent: list[JobRow] = []
    for row in await deployment_jobs(require_transaction(session), device.id):
        if row.id not in loaded:
            jobs.append(row)  # written back with the others
            loaded[row.id] = row
        recent.append(loaded[row.id])
    before = {row.id: row.state for row in recent}
    row = record_deployment_status(recent, status, now)
    if row is None:
        warn("deployment status for a file no job sent", mac=device.mac)
        return None
    return row, before[row.id]


async def record_unknown(
    effects: Sequence[Effect],
    mac: str,
    phone: PhoneRecord | None,
    *,
    session: AsyncSession | None,
    runtime: WpiRuntime,
    request: web.Request,
    now: dt.datetime,
) -> PhoneRecord | None:
    """Record a phone no device is registered for as unclaimed, as often as the
    per-process limits allow; the phone's record then, a new one if it had none."""
    for effect in effects:
        if not isinstance(effect, RecordUnknownDevice):
            continue
        transaction = require_transaction(session)
        if not (runtime.unclaimed_per_mac.allow(mac) and runtime.unclaimed_writes.allow()):
            return phone
        await record_unclaimed(
            transaction,
            mac,
            effect.items,
            address=request.remote,
            user_agent=request.headers.get("User-Agent"),
            now=now,
        )
        phone = phone or PhoneRecord.new(mac, now)
        phone.bound = False
        uri = reported_value(effect.items, CONTACT_ME_URI)
        if uri is not None:
            phone.contact_me_uri = uri[:255]
        mark_seen(phone, request, now)
        return phone
    return phone


def remember_bootstrap_refusal(
    message: WorkpointMessage, asked: SessionState, phone: PhoneRecord, warn: Warn
) -> None:
    """Remember a phone that refused the secure-mode bootstrap, so BOOTSTRAP mode stops."""
    if (
        message.reason is not ReasonForContact.REPLY_TO
        or asked.asked is not Action.WRITE_ITEMS
        or not any(key.name == GOTO_SECURE_MODE for key in asked.written)
    ):
        return
    refused = message.status is ReplyStatus.FAILED or any(
        item.failed and item.name == GOTO_SECURE_MODE for item in message.items
    )
    if refused and not phone.secure_refused:
        warn("phone refused the secure-mode bootstrap", mac=phone.mac)
        phone.secure_refused = True


def keep_session(
    phone: PhoneRecord, state: SessionState, hashed: str | None, now: dt.datetime
) -> str | None:
    """Store the session with the phone until it idles out; the token of a new cookie if
    the phone's session is not the one ``hashed`` (the presented cookie's hash) names."""
    new_token: str | None = None
    if hashed is None or phone.session_token_hash != hashed:
        new_token = secrets.token_urlsafe(24)
        hashed = token_hash(new_token)
    phone.session_token_hash = hashed
    phone.session_state = state.to_json()
    phone.session_expires_at = now + SESSION_IDLE
    return new_token


def end_session(phone: PhoneRecord) -> str | None:
    """Drop the phone's session; the hash of the token it had, if any."""
    closed = phone.session_token_hash
    phone.session_token_hash = phone.session_state = phone.session_expires_at = None
    return closed


def ledger_fetch(
    decision: Decision,
    device: DeviceFacts,
    phone: PhoneRecord,
    snapshot: DeviceSnapshot,
    request: web.Request,
    now: dt.datetime,
) -> Fetch | None:
    """An interaction that compared the configuration and ended cleanly is a "fetch".

    It goes to the provisioning ledger like a 3rd-party phone's file fetch: buffered and
    written in batches, with the device's last-seen facts, firmware and status
    (provisioned, then active), so none of that is a synchronous write here. The
    revision recorded is the device's configuration revision, as for files, so the
    outdated-devices list treats Unify phones like the others.
    """
    if not decision.ended or not decision.state.config_checked:
        return None
    if any(isinstance(effect, ProtocolViolation) for effect in decision.effects):
        return None
    stored = {(name, index): value for name, index, value in phone.inventory or ()}
    return Fetch(
        device_id=device.id,
        file=LEDGER_FILE,
        content_hash=hashlib.sha256(snapshot.config_revision.encode()).hexdigest(),
        revision=device.revision[:64],
        at=now,
        address=request.remote,
        user_agent=request.headers.get("User-Agent"),
        firmware_version=(stored.get((SOFTWARE_VERSION, None)) or "")[:64] or None,
        firmware_managed=device.firmware_managed,
    )


def mark_seen(phone: PhoneRecord, request: web.Request, now: dt.datetime) -> None:
    """The phone was heard from now: the address it came from, the one it reached."""
    phone.last_address = request.remote
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(local, tuple) and local:
        phone.server_address = str(local[0])[:64]
    phone.last_seen = now
