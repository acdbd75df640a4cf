"""The engine's snapshot of one phone, read for one message.

The engine decides from a plain value (:class:`~dls.provisioning.wpi.snapshot.DeviceSnapshot`)
so that it can stay pure; this is where that value is read and assembled:

- **The desired items**, from the device's effective settings through the Unify profile.
  Resolving them decrypts secrets and validates several documents, so they are cached
  per process (``WpiRuntime.desired``) by configuration revision: only on a miss are the
  settings documents read and resolved, and a resolved set is cached only if the
  documents read are of the revision the device's facts name. The revision also names
  the profile and whether secrets are included (not for a phone that must be secure, on
  the default port) and the secure-mode bootstrap is due, so a change to any of them is
  a new revision. The bootstrap items are added after the cache, never stored in it. A
  tenant whose settings do not resolve gets no items, not an error: its phones still run
  their jobs.
- **The pending jobs**, oldest first. The message that opens an interaction takes the
  firmware offer into account first (``dls.provisioning.wpi.firmware``): queueing or
  withdrawing a job needs a transaction, so without one this asks only whether the offer
  leaves the queue as it is, and raises ``NeedsTransaction`` if perhaps not. A job whose
  payload cannot be a command is failed here instead of sent.
- **The inventory** the phone last reported, secrets recognised by their keyed hash
  (``store.snapshot_inventory``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from dls.db.reads import Reader
from dls.devices.effective import SettingsSources, resolve_documents, settings_sources
from dls.devices.facts import DeviceFacts
from dls.devices.inheritance import ResolutionError
from dls.devices.unify import DeviceJob, JobState
from dls.provisioning.wpi.firmware import offer_unchanged, queue_firmware
from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.messages import WorkpointMessage
from dls.provisioning.wpi.phone import JobRow, PhoneRecord, pending_jobs
from dls.provisioning.wpi.profile import desired_items
from dls.provisioning.wpi.runtime import WpiRuntime
from dls.provisioning.wpi.secure import bootstrap_items
from dls.provisioning.wpi.snapshot import DeviceSnapshot, DeviceStanding, Job
from dls.provisioning.wpi.store import NeedsTransaction, engine_job, snapshot_inventory
from dls.secretbox import SecretError
from dls.tenancy.models import WpiSecureMode

__all__ = ["device_snapshot"]


async def device_snapshot(
    runtime: WpiRuntime,
    device: DeviceFacts | None,
    phone: PhoneRecord | None,
    opening: WorkpointMessage | None,
    *,
    reads: Reader,
    session: AsyncSession | None,
    now: dt.datetime,
) -> tuple[DeviceSnapshot, list[JobRow]]:
    """What the engine sees of ``device``, and the job rows to write back.

    ``opening`` is the message if it opens an interaction; ``reads`` is where this attempt
    reads (``session``, if it has a transaction). The rows to write back are all those
    loaded, a withdrawn one too, and any queued now.
    """
    if device is None:
        return DeviceSnapshot(DeviceStanding.UNKNOWN), []
    desired, revision = await _desired(runtime, reads, device, phone)
    inventory = phone.inventory if phone else None
    rows: list[JobRow] = list(await pending_jobs(reads, device.id, now))
    loaded = list(rows)
    if opening is not None:
        firmware = runtime.services.firmware
        if session is not None:
            rows = await queue_firmware(firmware, session, device, opening, inventory, rows, now)
        elif not await offer_unchanged(
            firmware, runtime.services.reads, device, opening, inventory, rows, now
        ):
            raise NeedsTransaction
    written = loaded + [row for row in rows if isinstance(row, DeviceJob)]  # new ones
    jobs = _engine_jobs(rows)
    known = snapshot_inventory(inventory, desired, runtime.hasher, device.mac)
    return DeviceSnapshot(DeviceStanding.BOUND, desired, known, jobs, revision), written


async def _desired(
    runtime: WpiRuntime, reads: Reader, device: DeviceFacts, phone: PhoneRecord | None
) -> tuple[tuple[Item, ...], str]:
    """The items the phone should hold, and the configuration revision they are of."""
    mode = device.wpi_secure_mode
    include_secrets = mode is not WpiSecureMode.REQUIRED or runtime.secure
    bootstrap = not runtime.secure and (
        mode is WpiSecureMode.REQUIRED
        or (mode is WpiSecureMode.BOOTSTRAP and not (phone is not None and phone.secure_refused))
    )
    revision = f"{device.revision}.{runtime.profile.digest}.{int(include_secrets)}{int(bootstrap)}"
    desired = runtime.desired.get(device.mac, revision)
    if desired is None:
        desired = await _read_desired(runtime, reads, device, revision, include_secrets)
    desired = desired or ()
    if bootstrap:
        desired += bootstrap_items(runtime.server_ca_pem, runtime.services.settings.secure_port)
    return desired, revision


async def _read_desired(
    runtime: WpiRuntime, reads: Reader, device: DeviceFacts, revision: str, include_secrets: bool
) -> tuple[Item, ...] | None:
    """Resolve and cache the device's items."""
    sources = await settings_sources(reads, device.id)
    if sources is None:
        return None
    desired = _resolve(runtime, sources, include_secrets)
    if desired is not None and sources.revision == device.revision:
        runtime.desired.put(device.mac, revision, desired)
    return desired


def _resolve(
    runtime: WpiRuntime, sources: SettingsSources, include_secrets: bool
) -> tuple[Item, ...] | None:
    try:
        settings = resolve_documents(
            sources.documents, sources.user_line, runtime.box, runtime.services.layers
        ).settings
    except (ResolutionError, SecretError, ValueError):
        # A half-configured tenant must not take its phones down: jobs still run.
        runtime.quiet.warning("device settings do not resolve; writing none", mac=sources.mac)
        return None
    return desired_items(runtime.profile, settings, include_secrets=include_secrets)


def _engine_jobs(rows: list[JobRow]) -> tuple[Job, ...]:
    """The engine's view of the queue; a row whose payload is no command is failed."""
    jobs = []
    for row in rows:
        job = engine_job(row)
        if job is None:
            row.state, row.detail = JobState.FAILED, "payload is not a valid command"
            continue
        jobs.append(job)
    return tuple(jobs)
