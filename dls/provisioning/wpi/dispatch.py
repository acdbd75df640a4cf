"""Background work of the WPI device path: contact-me for queued jobs, and housekeeping.

Every worker of every instance runs these loops; the database decides who does what.
A phone is *claimed* for a contact with a conditional update of its ``next_contact_at``
(only one claimant's update matches), so two workers never push the same phone, and a
worker that dies mid-contact only delays the next attempt until the claim lapses.

When a phone is contacted:

- it has a job queued (pending, or sent in a session that died, or busy for long), or
  it was recorded as unclaimed and has since been assigned to a tenant (so its first
  configuration does not wait for its next reboot);
- it has no session open (reference §8: none while a session is open);
- its contact gap has passed: phones ignore ContactMe for 300 s after one [AM-OSV], so
  dls sends at most one per gap, and backs off further while a phone does not call back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from aiohttp import web
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dls.background import FailureLog, cancel_and_wait
from dls.db.types import utcnow
from dls.devices.models import Device, DeviceStatus
from dls.devices.unify import ACTIVE_JOB_STATES, DeviceJob, JobKind, JobState, WpiDevice
from dls.provisioning.wpi.contact import ContactRefused, ContactSender, contact_target
from dls.provisioning.wpi.firmware import report_failed_install
from dls.provisioning.wpi.runtime import SESSION_IDLE_TIMEOUT, WpiRuntime
from dls.provisioning.wpi.store import MAX_JOB_ATTEMPTS, write_transaction

__all__ = [
    "BACKGROUND",
    "CONTACT_GAP",
    "POLL_INTERVAL",
    "Background",
]

log = logging.getLogger("dls.wpi.contact")

POLL_INTERVAL = 1.0  # seconds between looks for jobs that need a contact
ASSIGNED_SCAN_INTERVAL = 5.0  # seconds between looks for newly assigned phones
MAINTENANCE_INTERVAL = 30.0  # seconds between session and job clean-ups
BATCH = 64  # phones claimed per look
MAX_OUTSTANDING = 256  # contacts in progress per process
CONTACT_GAP = dt.timedelta(seconds=300)  # the phones' default contact gap [AM-OSV]
CLAIM_HOLD = dt.timedelta(seconds=120)  # a claim outlives every retry of one contact
REFUSED_HOLD = dt.timedelta(hours=1)  # a phone whose contact-me-uri we refuse
MAX_BACKOFF = dt.timedelta(hours=1)
STALE_SENT = dt.timedelta(seconds=SESSION_IDLE_TIMEOUT)  # sent in a session that is gone
BUSY_RECONTACT = dt.timedelta(minutes=15)  # a busy phone that never called back


def _next_contact(now: dt.datetime, contacts_without_session: int) -> dt.datetime:
    backoff = CONTACT_GAP * (2 ** min(contacts_without_session, 8))
    return now + min(max(CONTACT_GAP, backoff), MAX_BACKOFF)


class Background:
    """The loops of one device application; started and stopped with it."""

    def __init__(self, runtime: WpiRuntime, sender: ContactSender | None = None) -> None:
        self.runtime = runtime
        self.sender = sender or ContactSender()
        self._loops: list[asyncio.Task[None]] = []
        self._contacts: set[asyncio.Task[None]] = set()
        self._last_assigned_scan = 0.0

    async def start(self, _app: web.Application | None = None) -> None:
        await self.sender.start()
        self._loops = [
            asyncio.create_task(self._every(POLL_INTERVAL, self.contact_due), name="wpi-contact"),
            asyncio.create_task(
                self._every(MAINTENANCE_INTERVAL, self.maintain), name="wpi-maintenance"
            ),
        ]

    async def stop(self, _app: web.Application | None = None) -> None:
        await cancel_and_wait(*self._loops, *self._contacts)
        await self.sender.close()

    async def _every(self, interval: float, work: object) -> None:
        assert callable(work)
        failures = FailureLog(log, f"WPI {getattr(work, '__name__', 'background work')}")
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A database hiccup must not end the loop; the next round tries again.
                failures.failed(exc)
            else:
                failures.succeeded()
            await asyncio.sleep(interval)

    # --- contact-me ------------------------------------------------------------------

    async def contact_due(self) -> int:
        """Claim the phones that need a contact now and push them; how many were claimed."""
        if len(self._contacts) >= MAX_OUTSTANDING:
            return 0
        now = utcnow()
        loop_time = asyncio.get_running_loop().time()
        scan_assigned = loop_time - self._last_assigned_scan >= ASSIGNED_SCAN_INTERVAL
        if scan_assigned:
            self._last_assigned_scan = loop_time
        async with self.runtime.services.sessions() as session:
            candidates = await self._candidates(session, now, scan_assigned)
        if not candidates:
            return 0  # the usual case: a read, no write
        async with write_transaction(self.runtime.services.sessions) as session:
            claimed = [phone for phone in candidates if await self._claim(session, phone, now)]
        for phone in claimed:
            task = asyncio.create_task(self._contact(phone))
            self._contacts.add(task)
            task.add_done_callback(self._contacts.discard)
        return len(claimed)

    async def _candidates(
        self, session: AsyncSession, now: dt.datetime, scan_assigned: bool
    ) -> list[WpiDevice]:
        due = and_(
            WpiDevice.contact_me_uri.is_not(None),
            or_(WpiDevice.next_contact_at.is_(None), WpiDevice.next_contact_at <= now),
            or_(WpiDevice.session_expires_at.is_(None), WpiDevice.session_expires_at <= now),
            Device.vendor == "unify",
            Device.status != DeviceStatus.RETIRED,
        )
        waiting = select(DeviceJob.device_id).where(
            DeviceJob.expires_at > now,
            or_(
                DeviceJob.state == JobState.PENDING,
                and_(DeviceJob.state == JobState.SENT, DeviceJob.updated_at < now - STALE_SENT),
                and_(
                    DeviceJob.state == JobState.BUSY_RETRY,
                    DeviceJob.updated_at < now - BUSY_RECONTACT,
                ),
            ),
        )
        joined = select(WpiDevice).join(Device, Device.mac == WpiDevice.mac)
        found = list(
            (await session.scalars(joined.where(due, Device.id.in_(waiting)).limit(BATCH))).all()
        )
        if scan_assigned and len(found) < BATCH:
            assigned = joined.where(due, WpiDevice.bound.is_(False)).limit(BATCH - len(found))
            found += [
                phone for phone in (await session.scalars(assigned)).all() if phone not in found
            ]
        return found

    async def _claim(self, session: AsyncSession, phone: WpiDevice, now: dt.datetime) -> bool:
        result = await session.execute(
            update(WpiDevice)
            .where(
                WpiDevice.mac == phone.mac,
                or_(WpiDevice.next_contact_at.is_(None), WpiDevice.next_contact_at <= now),
            )
            .values(next_contact_at=now + CLAIM_HOLD)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def _contact(self, phone: WpiDevice) -> None:
        settings = self.runtime.services.settings
        port = settings.secure_port if phone.secure_since else settings.device_port
        try:
            url = contact_target(phone.contact_me_uri, phone.last_address)
        except ContactRefused as refused:
            self.runtime.quiet.warning(
                "contact-me refused: " + refused.reason, mac=phone.mac, address=phone.last_address
            )
            await self._settle(phone.mac, reached=None)
            return
        reached = await self.sender.contact(url, phone.server_address, port)
        if not reached:
            log.info("phone did not answer contact-me", extra={"fields": {"mac": phone.mac}})
        await self._settle(phone.mac, reached=reached)

    async def _settle(self, mac: str, *, reached: bool | None) -> None:
        now = utcnow()
        async with write_transaction(self.runtime.services.sessions) as session:
            phone = await session.get(WpiDevice, mac)
            if phone is None:
                return
            if reached is None:
                phone.next_contact_at = now + REFUSED_HOLD
                return
            if reached:
                phone.last_contacted_at = now
            phone.next_contact_at = _next_contact(now, phone.contact_failures)
            phone.contact_failures += 1  # reset when the phone opens a session

    # --- housekeeping ----------------------------------------------------------------

    async def maintain(self) -> None:
        """End idle sessions, expire undelivered jobs, fail jobs that were never answered."""
        now = utcnow()
        async with self.runtime.services.sessions() as session:
            idle = await session.scalar(
                select(WpiDevice.mac).where(WpiDevice.session_expires_at <= now).limit(1)
            )
            overdue = await session.scalar(
                select(DeviceJob.id)
                .where(
                    DeviceJob.state.in_(ACTIVE_JOB_STATES),
                    or_(
                        DeviceJob.expires_at <= now,
                        and_(
                            DeviceJob.state == JobState.SENT,
                            DeviceJob.attempts >= MAX_JOB_ATTEMPTS,
                        ),
                    ),
                )
                .limit(1)
            )
        if idle is None and overdue is None:
            return  # nothing to clean: no write at all
        async with write_transaction(self.runtime.services.sessions) as session:
            await session.execute(
                update(WpiDevice)
                .where(WpiDevice.session_expires_at <= now)
                .values(session_token_hash=None, session_state=None, session_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(DeviceJob)
                .where(DeviceJob.state.in_(ACTIVE_JOB_STATES), DeviceJob.expires_at <= now)
                .values(state=JobState.EXPIRED, updated_at=now, detail="not delivered in time")
                .execution_options(synchronize_session=False)
            )
            unanswered = await session.execute(
                update(DeviceJob)
                .where(
                    DeviceJob.state == JobState.SENT,
                    DeviceJob.attempts >= MAX_JOB_ATTEMPTS,
                    DeviceJob.updated_at < now - STALE_SENT,
                )
                .values(
                    state=JobState.FAILED,
                    updated_at=now,
                    detail=f"no answer after {MAX_JOB_ATTEMPTS} attempts",
                )
                .returning(DeviceJob.id, DeviceJob.device_id, DeviceJob.kind, DeviceJob.payload)
                .execution_options(synchronize_session=False)
            )
            # An install nobody answered for is a failed install for the device's rollout.
            for job_id, device_id, kind, payload in unanswered.all():
                version = (payload or {}).get("version")
                if kind is JobKind.SOFTWARE_DEPLOYMENT and version:
                    await report_failed_install(
                        self.runtime.services.firmware,
                        session,
                        device_id,
                        job_id,
                        str(version),
                        "never answered",
                        now,
                    )


BACKGROUND = web.AppKey("wpi_background", Background)
