"""Firmware for Unify phones: the firmware offer delivered as a SoftwareDeployment job.

3rd-party phones find their firmware URL in the files they fetch; a Unify phone is told
over WPI, with a ``SoftwareDeployment`` command (wpi-protocol.md §11). So when a served
phone opens an interaction, :func:`queue_firmware` asks ``dls.firmware`` what the phone
should run (pin, rollout, targets; one query) and, if the phone reports another version,
queues an ordinary ``device_jobs`` row in the same transaction. From there the job
machinery does the rest: the engine sends it in this very interaction (after the
configuration, as the last command, because the phone reboots), the reply settles it,
and the admin API lists it with the device's jobs. After the install the phone starts
up with the new ``software-version``, which reaches the rollout through the provisioning
ledger like any version report.

Why the checks before queueing:

- one active software job at a time, whoever queued it: two installs cannot both run;
- no second job for a version the last settled software job was already for (accepted
  or failed): a phone that took the image and still runs its old version would
  otherwise get it again at every start-up. An admin can still queue one by hand; and a
  later offer of another version (a new target, a rollback) queues again;
- none for a device whose rollout already counts it as failed: the rollout waits for an
  admin's decision, not for another attempt.

A job this module queued and that is not settled yet is withdrawn when the offer no
longer asks for it (the rollout was aborted, the target changed, the phone already runs
the version): it must not install an image nobody wants any more.

:func:`report_install_failure` is the way back: a software job that ends failed (refused,
unanswered, or a ``status`` report of the ``APP`` file failing) is a failed install for
the device's rollout, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.db.reads import PointReads
from dls.devices.facts import DeviceFacts
from dls.devices.unify import ACTIVE_JOB_STATES, DeviceJob, JobKind, JobState
from dls.firmware.engine import DeviceState
from dls.firmware.runtime import FirmwareRuntime, Offer
from dls.firmware.versions import same_version
from dls.provisioning.wpi.items import SOFTWARE_VERSION
from dls.provisioning.wpi.messages import FilePriority, ReasonForContact, WorkpointMessage
from dls.provisioning.wpi.phone import JobRow
from dls.provisioning.wpi.session import SessionState
from dls.quiet import QuietLog

__all__ = [
    "ORIGIN",
    "install_failed",
    "job_lifetime",
    "offer_unchanged",
    "opens_interaction",
    "queue_firmware",
    "report_failed_install",
    "report_install_failure",
    "running_version",
    "wpi_version",
]

log = logging.getLogger(__name__)
_quiet = QuietLog(log)  # an unsendable version would otherwise be logged at every start-up

ORIGIN = "firmware-offer"  # payload["origin"] of the jobs queued here; admins' jobs have none
# Messages that open an interaction; reply-to and clean-up only continue or end one.
_OPENING = frozenset(
    {
        ReasonForContact.START_UP,
        ReasonForContact.SOLICITED,
        ReasonForContact.LOCAL_CHANGES,
        ReasonForContact.INVENTORY_CHANGES,
        ReasonForContact.STATUS,
    }
)
_SETTLED = (JobState.ACCEPTED, JobState.FAILED)
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_SOFTWARE_VERSION = re.compile(r"[Vv](\d+)\s*[Rr](\d+(?:\.\d+)*)")


def opens_interaction(state: SessionState, message: WorkpointMessage) -> bool:
    """Whether ``message`` starts an interaction: only then is the offer looked up.

    The engine treats any message but ``reply-to`` and ``clean-up`` as a new interaction
    (``decide``); a later part of a fragmented message continues one.
    """
    return message.reason in _OPENING and not state.fragments


def running_version(message: WorkpointMessage, inventory: Any) -> str | None:
    """The ``software-version`` the phone reports now, else the one it reported last."""
    reported = message.value(SOFTWARE_VERSION)
    if reported:
        return reported
    for entry in inventory if isinstance(inventory, list) else ():
        # Stored as [name, index, value] triples (dls.provisioning.wpi.store).
        if isinstance(entry, list) and entry[:2] == [SOFTWARE_VERSION, None] and len(entry) == 3:
            return str(entry[2]) or None
    return None


def wpi_version(version: str) -> str | None:
    """``file-sw-version`` for ``version``: dotted as written, ``V3 R5.16.0`` -> ``3.5.16.0``.

    The reading of ``V<major> R<rest>`` is the Node DLS's [NODE]; None for any other
    spelling, which cannot be sent.
    """
    text = version.strip()
    if _DOTTED.fullmatch(text):
        return text
    match = _SOFTWARE_VERSION.fullmatch(text)
    return f"{match[1]}.{match[2]}" if match else None


def job_lifetime(firmware: FirmwareRuntime) -> dt.timedelta:
    """How long a queued job may wait for the phone: half the download URL's lifetime.

    A token issued now is valid for at least one ``firmware_url_ttl``; a job delivered
    within half of it leaves the phone the other half to download. A job that expires
    undelivered is queued again, with a fresh URL, at the phone's next interaction.
    """
    return dt.timedelta(seconds=firmware.tokens.ttl / 2)


async def queue_firmware(
    firmware: FirmwareRuntime,
    session: AsyncSession,
    device: DeviceFacts,
    message: WorkpointMessage,
    inventory: Any,
    queue: Sequence[JobRow],
    now: dt.datetime,
) -> list[JobRow]:
    """The device's job queue once the firmware offer is queued on it, if it needs to be.

    ``queue`` is what ``pending_jobs`` loaded; the result leaves out a job of ours the
    offer no longer wants (withdrawn: state expired) and ends with the new job, flushed.
    """
    offer = await firmware.offer(session, device, device.pinned_version, now)
    running = running_version(message, inventory)
    for row in queue:
        detail = _unwanted(row, offer, running)
        if detail is not None:
            row.state, row.detail, row.updated_at = JobState.EXPIRED, detail[:255], now
    active: list[JobRow] = [row for row in queue if row.state in ACTIVE_JOB_STATES]
    if offer is not None and await _wants_job(session, device, offer, running, active):
        job = _new_job(firmware, device, offer, now)
        if job is not None:
            session.add(job)
            await session.flush()
            log.info(
                "firmware offered to a Unify phone as a SoftwareDeployment job",
                extra={"fields": {"device_id": job.device_id, "job_id": job.id}},
            )
            active.append(job)
    return active


async def offer_unchanged(
    firmware: FirmwareRuntime,
    reads: PointReads,
    device: DeviceFacts,
    message: WorkpointMessage,
    inventory: Any,
    queue: Sequence[JobRow],
    now: dt.datetime,
) -> bool:
    """Whether :func:`queue_firmware` would leave ``queue`` as it is, found without a
    transaction: then the message needs none. False means "perhaps not": the phone runs
    another version than the offer (a job may be due) or a job is to be withdrawn."""
    # Without a target for its vendor, a rollout or a pin nothing can be offered
    # (DeviceFacts.firmware_managed); the file path skips the query alike.
    managed = device.firmware_managed or device.pinned_version
    offer = await firmware.offer(reads, device, device.pinned_version, now) if managed else None
    running = running_version(message, inventory)
    if any(_unwanted(row, offer, running) is not None for row in queue):
        return False
    if offer is None or running is None or same_version(running, offer.version):
        return True
    if offer.selection.rollout_state is DeviceState.FAILED:
        return True
    return any(
        row.kind is JobKind.SOFTWARE_DEPLOYMENT and row.state in ACTIVE_JOB_STATES for row in queue
    )


async def _wants_job(
    session: AsyncSession,
    device: DeviceFacts,
    offer: Offer,
    running: str | None,
    active: Sequence[JobRow],
) -> bool:
    """Whether the phone needs a job for ``offer`` (the checks in the module docstring)."""
    if running is None or same_version(running, offer.version):
        return False
    if offer.selection.rollout_state is DeviceState.FAILED:
        return False
    if any(row.kind is JobKind.SOFTWARE_DEPLOYMENT for row in active):
        return False
    return not same_version(await _last_settled_version(session, device.id), offer.version)


def _new_job(
    firmware: FirmwareRuntime, device: DeviceFacts, offer: Offer, now: dt.datetime
) -> DeviceJob | None:
    version = wpi_version(offer.version)
    if version is None:
        _quiet.warning(
            "offered firmware version cannot be sent as file-sw-version; no job queued",
            device_id=device.id,
            version=offer.version[:64],
        )
        return None
    return DeviceJob(
        device_id=device.id,
        kind=JobKind.SOFTWARE_DEPLOYMENT,
        payload=_payload(offer, version),
        state=JobState.PENDING,
        attempts=0,
        created_by=None,
        created_at=now,
        updated_at=now,
        expires_at=now + job_lifetime(firmware),
    )


def _payload(offer: Offer, version: str) -> dict[str, Any]:
    """What the engine sends (``engine_job``), plus where the offer came from."""
    return {
        "url": offer.url,
        "version": version,
        "priority": FilePriority.NORMAL.value,  # never reboot a phone in a call
        "origin": ORIGIN,
        "source": offer.selection.source.value,
        "rollout_id": offer.selection.rollout_id,
    }


def _unwanted(row: JobRow, offer: Offer | None, running: str | None) -> str | None:
    """Why our unsettled job ``row`` is to be withdrawn (expired), or None to keep it:
    its version is no longer offered, or the phone already runs it."""
    if row.kind is not JobKind.SOFTWARE_DEPLOYMENT or row.payload.get("origin") != ORIGIN:
        return None
    if row.state not in ACTIVE_JOB_STATES:
        return None
    version = str(row.payload.get("version") or "")
    if offer is not None and same_version(version, offer.version):
        if not same_version(running, version):
            return None
        return f"withdrawn: the phone already runs {version}"
    return "withdrawn: this version is no longer offered"


async def _last_settled_version(session: AsyncSession, device_id: int) -> str | None:
    """The version of the device's most recently settled software job, whoever queued it."""
    payload = await session.scalar(
        select(DeviceJob.payload)
        .where(
            DeviceJob.device_id == device_id,
            DeviceJob.kind == JobKind.SOFTWARE_DEPLOYMENT,
            DeviceJob.state.in_(_SETTLED),
        )
        .order_by(DeviceJob.id.desc())
        .limit(1)
    )
    if not isinstance(payload, dict) or payload.get("version") is None:
        return None
    return str(payload["version"])


def install_failed(row: JobRow, before: JobState) -> bool:
    """Whether ``row`` is a software job that just ended failed (``before``: its state
    before this message, so a repeated report of the same failure counts once). Every
    software job that carries a version counts, an admin's too: a failed install is a
    failed install."""
    return (
        row.kind is JobKind.SOFTWARE_DEPLOYMENT
        and row.state is JobState.FAILED
        and before is not JobState.FAILED
        and bool(row.payload.get("version"))
    )


async def report_install_failure(
    firmware: FirmwareRuntime,
    session: AsyncSession,
    row: JobRow,
    before: JobState,
    now: dt.datetime,
) -> None:
    """Tell the device's rollout that a software job just ended failed (``install_failed``)."""
    if install_failed(row, before):
        version, why = str(row.payload["version"]), row.detail or "failed"
        await report_failed_install(firmware, session, row.device_id, row.id, version, why, now)


async def report_failed_install(
    firmware: FirmwareRuntime,
    session: AsyncSession,
    device_id: int,
    job_id: int,
    version: str,
    why: str,
    now: dt.datetime,
) -> None:
    """The rollout's record of a failed install, named after the job that carried it."""
    detail = f"SoftwareDeployment {version} (job {job_id}): {why}"
    await firmware.report_failure(session, device_id, detail[:200], now)
