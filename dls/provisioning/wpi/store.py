"""Reading a phone's WPI state for the engine, and writing back what the engine decided.

The stored inventory is a JSON list of ``[name, index, value]`` triples, exactly the
items the phone reported (or accepted), minus three kinds that must never be kept:

- secret values (``sip-pwd`` ...), kept only as a keyed hash, so that a value the phone
  already holds is recognised without being stored;
- the secure-mode bootstrap items (a private key among them);
- ``cloud-pin-value``, the user's deployment PIN.

Each effect of :mod:`dls.provisioning.wpi.effects` maps to one change of a loaded row
(a record of :mod:`dls.provisioning.wpi.phone`); the caller writes them together with
the session. What needs more than those rows runs in a transaction
(:func:`write_transaction`); a step that has none raises :class:`NeedsTransaction`, and
the message is handled again in one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dls import audit
from dls.db.engine import WRITER
from dls.db.types import storable
from dls.devices.facts import DeviceFacts
from dls.devices.models import Device, UnclaimedDevice
from dls.devices.unify import (
    SECRET_MARKER,
    JobKind,
    JobState,
    KeyedHash,
)
from dls.provisioning.wpi.effects import (
    DeploymentStatus,
    JobStatus,
    RecordDeploymentStatus,
    RecordLocalChanges,
    UpdateJob,
)
from dls.provisioning.wpi.items import SECRET_ITEMS, SOFTWARE_VERSION, Item
from dls.provisioning.wpi.messages import (
    DeploymentFile,
    FileAction,
    FileDeployment,
    FilePriority,
    FileType,
    SoftwareDeployment,
)
from dls.provisioning.wpi.phone import JobRow
from dls.provisioning.wpi.secure import BOOTSTRAP_ITEMS
from dls.provisioning.wpi.snapshot import Job
from dls.provisioning.wpi.snapshot import JobKind as EngineJobKind

__all__ = [
    "CLOUD_PIN_VALUE",
    "CONTACT_ME_URI",
    "DEVICE_TYPE",
    "MAX_JOB_ATTEMPTS",
    "NeedsTransaction",
    "apply_job_update",
    "engine_job",
    "merge_inventory",
    "record_deployment_status",
    "record_local_changes",
    "record_unclaimed",
    "require_transaction",
    "snapshot_inventory",
    "write_transaction",
]

log = logging.getLogger(__name__)

CONTACT_ME_URI = "contact-me-uri"  # [DG p.27]
DEVICE_TYPE = "device-type"
CLOUD_PIN_VALUE = "cloud-pin-value"  # [D NODE]; its use as the deployment PIN is our design
MAX_JOB_ATTEMPTS = 5  # sends of one job before it counts as failed
MAX_INVENTORY_VALUE = 4096  # characters kept per reported value; longer ones are cut
_NEVER_STORED = BOOTSTRAP_ITEMS | {CLOUD_PIN_VALUE}
_UNKNOWN_INVENTORY_ITEMS = 64  # items kept for an unclaimed phone: identity, not settings

_ENGINE_KINDS = {kind: EngineJobKind(kind.value) for kind in JobKind}
_STATUS_STATES = {
    JobStatus.SENT: JobState.SENT,
    JobStatus.BUSY: JobState.BUSY_RETRY,
    JobStatus.ACCEPTED: JobState.ACCEPTED,
    JobStatus.FAILED: JobState.FAILED,
    JobStatus.UP_TO_DATE: JobState.ACCEPTED,
}


# --- inventory ------------------------------------------------------------------------


def _secret_purpose(mac: str, item: Item) -> str:
    return f"wpi-item:{mac}:{item.name}:{item.index}"


def _stored(items: Any) -> dict[tuple[str, int | None], str]:
    if not isinstance(items, list):
        return {}
    result = {}
    for entry in items:
        if isinstance(entry, list) and len(entry) == 3:
            name, index, value = entry
            result[(str(name), index if isinstance(index, int) else None)] = str(value)
    return result


def snapshot_inventory(
    stored: Any, desired: Iterable[Item], hasher: KeyedHash, mac: str
) -> tuple[Item, ...] | None:
    """The inventory as the engine should see it; None if the phone was never read.

    A secret whose stored hash matches the desired value is shown as that value, so the
    engine does not write it again; any other secret shows its hash, which differs.
    """
    if stored is None:
        return None
    values = _stored(stored)
    for item in desired:
        held = values.get((item.name, item.index))
        if (
            held is not None
            and held.startswith(SECRET_MARKER)
            and held == SECRET_MARKER + hasher.digest(_secret_purpose(mac, item), item.value)
        ):
            values[(item.name, item.index)] = item.value
    return tuple(Item(name, value, index) for (name, index), value in values.items())


def merge_inventory(
    stored: Any, items: Sequence[Item], *, complete: bool, hasher: KeyedHash, mac: str
) -> list[list[Any]]:
    """The new stored inventory after the phone reported (or accepted) ``items``.

    ``complete`` replaces the inventory, except for secret hashes the report does not
    mention: phones need not read passwords back, and forgetting that we wrote one would
    only make us write it again.
    """
    before = _stored(stored)
    after: dict[tuple[str, int | None], str] = (
        {key: value for key, value in before.items() if value.startswith(SECRET_MARKER)}
        if complete
        else before
    )
    for item in items:
        if item.failed or item.name in _NEVER_STORED:
            continue
        if item.name in SECRET_ITEMS:
            value = SECRET_MARKER + hasher.digest(_secret_purpose(mac, item), item.value)
        else:
            value = item.value[:MAX_INVENTORY_VALUE]
        after[(item.name, item.index)] = value
    return [[name, index, value] for (name, index), value in after.items()]


def reported_value(items: Iterable[Item], name: str) -> str | None:
    for item in items:
        if item.name == name and item.index is None and not item.failed:
            return item.value
    return None


# --- transactions ---------------------------------------------------------------------


class NeedsTransaction(Exception):
    """The message needs more than the rows it read; handle it again in a transaction."""


def require_transaction(session: AsyncSession | None) -> AsyncSession:
    """The transaction a step needs: ``session``, or ``NeedsTransaction`` if there is none."""
    if session is None:
        raise NeedsTransaction
    return session


@asynccontextmanager
async def write_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A transaction that reads and then writes, safe on SQLite under concurrency.

    SQLite refuses, at once and without waiting, a transaction that read and then wants to
    write while another connection writes (its busy handler only runs for a transaction
    that has not read yet). So on SQLite the transaction begins with ``BEGIN IMMEDIATE``
    (``dls.db.engine.WRITER``), which takes the write lock before the first read; waiting
    for it is left to SQLite's busy handler, in the connection's thread. (Queueing this
    process's writers on an asyncio lock instead halved the throughput measured with
    bench/wpi.py: the next writer then waits for the event loop before it can even
    begin.) PostgreSQL needs nothing of the kind: a plain transaction.
    """
    async with sessions() as session, session.begin():
        await session.connection(execution_options=WRITER)
        yield session


# --- jobs -----------------------------------------------------------------------------


_FILES = TypeAdapter(list[dict[str, str]])


def engine_job(row: JobRow) -> Job | None:
    """The engine's view of a job row; None if its payload cannot be a command."""
    try:
        match row.kind:
            case JobKind.FILE_DEPLOYMENT:
                files = tuple(
                    DeploymentFile(
                        url=entry["url"],
                        file_type=FileType(entry["file_type"]),
                        file_action=FileAction(entry.get("action", FileAction.DEPLOY.value)),
                    )
                    for entry in _FILES.validate_python(row.payload.get("files"))
                )
                return Job(str(row.id), EngineJobKind.FILE_DEPLOYMENT, FileDeployment(files))
            case JobKind.SOFTWARE_DEPLOYMENT:
                deployment = SoftwareDeployment(
                    url=str(row.payload["url"]),
                    software_version=str(row.payload["version"]),
                    priority=FilePriority(row.payload.get("priority", FilePriority.NORMAL.value)),
                )
                return Job(str(row.id), EngineJobKind.SOFTWARE_DEPLOYMENT, deployment)
            case _:
                return Job(str(row.id), _ENGINE_KINDS[row.kind])
    except (KeyError, TypeError, ValueError, ValidationError):
        return None


def apply_job_update(row: JobRow, update: UpdateJob, now: dt.datetime) -> None:
    row.state = _STATUS_STATES[update.status]
    row.updated_at = now
    if update.status is JobStatus.SENT:
        row.attempts += 1
        if row.attempts > MAX_JOB_ATTEMPTS:
            row.state = JobState.FAILED
            row.detail = f"no answer after {MAX_JOB_ATTEMPTS} attempts"
    elif update.status is JobStatus.UP_TO_DATE:
        row.detail = "nothing to write: the phone was up to date"
    elif update.status is JobStatus.FAILED:
        names = ", ".join(sorted({key.name for key in update.failed_items}))
        row.detail = (f"refused items: {names}" if names else "refused by the phone")[:255]


def record_deployment_status(
    jobs: Sequence[JobRow], status: RecordDeploymentStatus, now: dt.datetime
) -> JobRow | None:
    """File the phone's per-file result on the newest deployment job naming the file.

    File deployments name their files in ``files``, a software deployment its image in
    ``url``; the phone reports only the file name [DG p.54]. An ``APP`` result can only be
    the firmware image, any other type only a file, so a logo that happens to share the
    image's name is not taken for a failed install.
    """
    name = status.file_name or ""
    for row in sorted(jobs, key=lambda job: job.id, reverse=True):
        if not _names_file(row, name, status.file_type):
            continue
        result = dict(row.result or {})
        result[name] = {
            "status": status.status.value,
            "type": status.file_type,
            "date": status.date,
            "time": status.time,
        }
        row.result = result
        row.updated_at = now
        if status.status is DeploymentStatus.FAILED:
            row.state = JobState.FAILED
            row.detail = f"file {name[:200]} failed on the phone"
        return row
    return None


def _names_file(row: JobRow, name: str, file_type: str | None) -> bool:
    """Whether the job ``row`` sent a file the phone would report as ``name``."""
    if file_type is not None:
        is_app = file_type.strip().upper() == FileType.APP.value
        if is_app != (row.kind is JobKind.SOFTWARE_DEPLOYMENT):
            return False
    if row.kind is JobKind.SOFTWARE_DEPLOYMENT:
        urls = [row.payload.get("url")]
    elif row.kind is JobKind.FILE_DEPLOYMENT:
        files = row.payload.get("files") or []
        urls = [entry.get("url") for entry in files if isinstance(entry, dict)]
    else:
        return False
    for url in urls:
        if isinstance(url, str):
            last = url.rsplit("/", 1)[-1]
            # Our guess: a phone may report the name as the URL has it, or decoded.
            if name in (last, unquote(last)):
                return True
    return False


# --- unclaimed phones and local changes ------------------------------------------------


async def record_unclaimed(
    session: AsyncSession,
    mac: str,
    items: Sequence[Item],
    *,
    address: str | None,
    user_agent: str | None,
    now: dt.datetime,
) -> None:
    """Create or refresh the unclaimed-device row, with the phone's identity items."""
    inventory = {
        item.name if item.index is None else f"{item.name}[{item.index}]": item.value[:255]
        for item in items[:_UNKNOWN_INVENTORY_ITEMS]
        if not item.failed and item.name not in _NEVER_STORED and item.name not in SECRET_ITEMS
    }
    row = await session.get(UnclaimedDevice, mac)
    if row is None:
        row = UnclaimedDevice(mac=mac, vendor="unify", first_seen=now, requests=0)
        session.add(row)
    row.model = (inventory.get(DEVICE_TYPE) or row.model or "")[:64] or None
    row.firmware_version = (inventory.get(SOFTWARE_VERSION) or row.firmware_version or "")[
        :64
    ] or None
    row.address = address
    row.user_agent = storable(user_agent, 255)
    if inventory:
        row.inventory = inventory
    row.last_seen = now
    row.requests = (row.requests or 0) + 1


def record_local_changes(
    session: AsyncSession,
    device: Device | DeviceFacts,
    change: RecordLocalChanges,
    request_id: str,
) -> None:
    """Log and audit settings changed on the phone; only item names, never values."""
    accepted = sorted({item.name for item in change.accepted})
    conflicts = sorted({conflict.key.name for conflict in change.conflicts})
    if conflicts:
        log.warning(
            "local changes on the phone conflict with managed settings; overwriting",
            extra={"fields": {"device_id": device.id, "items": ",".join(conflicts)}},
        )
    audit.record(
        session,
        actor_user_id=None,
        actor_tenant_id=None,
        target_tenant_id=device.tenant_id,
        via=audit.Via.DIRECT,
        action="device.local_changes",
        object_type="device",
        object_id=device.id,
        changes={"accepted": accepted, "overwritten": conflicts},
        request_id=request_id,
    )
