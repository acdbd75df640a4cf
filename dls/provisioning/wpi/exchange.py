"""One WPI message through the device path: identify, trust, self-setup, decide, record.

:func:`exchange` is the DESIGN data flow for WPI, one step per call, each with an early
return: find the session and the phone, check trust (secure mode, client certificate),
bind by deployment PIN if the phone offers one, build the engine's snapshot from the
effective settings (``snapshot_builder``), let the pure engine decide, turn its effects
and the session into changes of the phone's records (``persist``), write them, and
render the answer. This module keeps the order of the steps and the retries; what each
step reads or changes is in the module it names.

Two ways through, the same steps:

- **Read, decide, write** (almost every message): the phone's row, the device's facts
  (``dls.devices.facts``) and its pending jobs are point reads outside any transaction
  (``dls.db.reads``); the engine decides; the changed rows are written in one short
  burst of guarded statements (``dls.db.writes``, ``dls.provisioning.wpi.phone``). If
  another message of the same phone wrote in between, a guard misses and the message is
  handled again from a fresh read. On SQLite this holds the write lock for a fraction of
  a millisecond instead of across a dozen hand-offs to a database thread.
- **In one transaction** (``write_transaction``), when the message needs more than rows
  it read: a self-setup PIN, a firmware offer that may queue or withdraw a job, an unknown
  phone to record, local changes to audit, a deployment status to file, a failed install
  to report to its rollout. The first way notices this before it writes anything
  (``NeedsTransaction``) and the message starts over in a transaction.

What is written per message: the phone's ``wpi_devices`` row, always for an assigned
phone (the session changes with every message; the inventory, last address and last-seen
time ride along); ``device_jobs`` rows for messages that send or settle a job; rarely an
audit entry, a PIN row, a device row, an unclaimed-device row, a firmware job. The
device's last-seen facts, firmware version and status go through the provisioning
ledger's buffer, written in batches off the request path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dls.db.reads import Reader
from dls.db.types import utcnow
from dls.db.writes import Write, WriteConflict, run_burst
from dls.devices.facts import DeviceFacts, device_facts
from dls.devices.models import Device, DeviceStatus
from dls.logs import REQUEST_ID
from dls.provisioning.wpi.engine import Decision, decide, device_mac
from dls.provisioning.wpi.firmware import opens_interaction
from dls.provisioning.wpi.identity import certificate_mac, plain_mac
from dls.provisioning.wpi.items import SOFTWARE_VERSION
from dls.provisioning.wpi.messages import (
    CleanUp,
    DLSMessage,
    ReasonForContact,
    WorkpointMessage,
    build_response,
)
from dls.provisioning.wpi.persist import (
    apply_effects,
    end_session,
    keep_session,
    ledger_fetch,
    mark_seen,
    record_unknown,
    remember_bootstrap_refusal,
    token_hash,
)
from dls.provisioning.wpi.phone import (
    JobRecord,
    JobRow,
    PhoneRecord,
    phone_by_mac,
    phone_by_token,
)
from dls.provisioning.wpi.runtime import WpiRuntime
from dls.provisioning.wpi.secure import issue_in_reply
from dls.provisioning.wpi.selfsetup import bind_with_pin
from dls.provisioning.wpi.session import SessionState, SessionStateError
from dls.provisioning.wpi.snapshot_builder import device_snapshot
from dls.provisioning.wpi.store import (
    CLOUD_PIN_VALUE,
    DEVICE_TYPE,
    NeedsTransaction,
    require_transaction,
    write_transaction,
)
from dls.tls import client_certificate

__all__ = ["CONFLICT_ATTEMPTS", "Answer", "NeedsTransaction", "exchange", "token_hash"]

log = logging.getLogger(__name__)

VENDOR = "unify"
# Times a message is handled again after another message of its phone wrote first; two
# messages of one phone at once are rare (a retry racing its original), three unheard of.
CONFLICT_ATTEMPTS = 3
_SELF_SETUP_REASONS = (ReasonForContact.START_UP, ReasonForContact.SOLICITED)
_UNSERVED = (DeviceStatus.RETIRED,)


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    new_token: str | None = None  # set this session cookie
    clear_cookie: bool = False
    ended: bool = True  # the answer is CleanUp


async def exchange(
    runtime: WpiRuntime, request: web.Request, message: WorkpointMessage, token: str | None
) -> Answer:
    """Answer one parsed phone message; see the module docstring for what it writes."""
    services = runtime.services
    now = utcnow()
    hashed = token_hash(token) if token else None
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            try:
                step = _Message(runtime, request, message, hashed, now, None)
                await step.run()
                await services.writes.run(step.writes())
            except NeedsTransaction:
                async with write_transaction(services.sessions) as session:
                    step = _Message(runtime, request, message, hashed, now, session)
                    await step.run()
                    await run_burst(session, step.writes())
            break
        except (WriteConflict, IntegrityError) as conflict:
            # Another message of this phone wrote first: read again, decide again.
            if attempt == CONFLICT_ATTEMPTS:
                raise
            # The type only: an IntegrityError's text carries the statement's parameters.
            log.debug("WPI message handled again after a %s", type(conflict).__name__)
    for action in step.after:
        action()  # bookkeeping kept in memory, now that the writes are in

    # An answer; a certificate is issued only now, outside any transaction.
    if step.reply is None:
        return Answer(
            build_response(DLSMessage(message.nonce, CleanUp())), clear_cookie=step.clear_cookie
        )
    reply = step.reply
    if step.device is not None and step.mac is not None:
        reply = await issue_in_reply(reply, services.pki, step.mac)
    try:
        body = build_response(reply)
    except ValueError:
        runtime.quiet.warning("a desired value cannot be sent in XML; answering CleanUp")
        return Answer(build_response(DLSMessage(message.nonce, CleanUp())), clear_cookie=True)
    return Answer(body, new_token=step.new_token, clear_cookie=step.clear_cookie, ended=step.ended)


@dataclass(slots=True)
class _Message:
    """One attempt at one message: reads, decides, and leaves its writes in ``phone`` and
    ``jobs``. With ``session`` None it reads through the point reads and raises
    ``NeedsTransaction`` rather than do what only a transaction can."""

    runtime: WpiRuntime
    request: web.Request
    message: WorkpointMessage
    hashed: str | None
    now: dt.datetime
    session: AsyncSession | None
    # Results.
    mac: str | None = None
    device: DeviceFacts | None = None
    phone: PhoneRecord | None = None
    jobs: list[JobRow] = field(default_factory=list)
    reply: DLSMessage | None = None  # None: CleanUp, for a message not served
    new_token: str | None = None
    clear_cookie: bool = False
    ended: bool = True
    after: list[Callable[[], None]] = field(default_factory=list)

    def writes(self) -> list[Write]:
        found = [self.phone.write()] if self.phone is not None else []
        found += [job.write() for job in self.jobs if isinstance(job, JobRecord)]
        return [write for write in found if write is not None]

    def _warn(self, reason: str, /, **fields: object) -> None:
        self.after.append(lambda: self.runtime.quiet.warning(reason, **fields))

    def _reader(self) -> Reader:
        """Where this attempt reads: the point reads, or its transaction."""
        return self.runtime.services.reads if self.session is None else self.session

    def _refuse(self, reason: str, /, **fields: object) -> None:
        """End here with CleanUp, ending the phone's session if it has a cookie."""
        self._warn(reason, **fields)
        self.clear_cookie = self.hashed is not None

    async def run(self) -> None:
        runtime, message, now = self.runtime, self.message, self.now
        reads = self._reader()

        # 1. The session the cookie names, and the phone the message is about.
        state, hashed, phone = SessionState(), self.hashed, None
        if hashed is not None:
            phone = await phone_by_token(reads, hashed)
            if (
                phone is None
                or phone.session_state is None
                or phone.session_expires_at is None
                or phone.session_expires_at <= now
            ):
                hashed = None
            else:
                try:
                    state = SessionState.from_json(phone.session_state)
                except SessionStateError:
                    hashed = None
        mac = self.mac = plain_mac(device_mac(state, message))
        if mac is None:
            return self._refuse("WPI message without a usable mac-addr")
        if phone is not None and phone.mac != mac:
            # A cookie of one phone with another phone's MAC: end that session, serve none.
            self.phone = phone
            self._end_session(phone)
            return self._refuse("WPI session cookie presented with another mac-addr")
        if phone is None:
            phone = await phone_by_mac(reads, mac)
        facts = await device_facts(reads, mac)

        # 2. Trust: the secure listener serves only the MAC its certificate names; a phone
        # bootstrapped to secure mode is served nowhere else.
        if runtime.secure and certificate_mac(client_certificate(self.request)) != mac:
            return self._refuse("client certificate names another phone", mac=mac)
        device = _served(facts)
        if not runtime.secure and device is not None and phone and phone.secure_since:
            return self._refuse("phone in secure mode contacted the default port", mac=mac)

        # 3. Self-setup: an unassigned phone offering a deployment PIN.
        pin = message.value(CLOUD_PIN_VALUE)
        if (
            pin
            and not runtime.secure
            and message.reason in _SELF_SETUP_REASONS
            and (device is None or device.user_id is None)
        ):
            session = require_transaction(self.session)
            phone = phone or PhoneRecord.new(mac, now)
            facts = await self._self_setup(session, phone, pin, facts)
            device = _served(facts)

        # 4. Decide; an interaction's first message may queue the firmware offer first.
        opening = message if opens_interaction(state, message) else None
        snapshot, self.jobs = await device_snapshot(
            runtime, device, phone, opening, reads=reads, session=self.session, now=now
        )
        decision = decide(state, message, snapshot)

        # 5. Record.
        self.phone, self.device = phone, device
        if device is None:
            # A MAC registered as another vendor's device, or retired, is not unclaimed.
            if facts is None:
                self.phone = await record_unknown(
                    decision.effects,
                    mac,
                    phone,
                    session=self.session,
                    runtime=runtime,
                    request=self.request,
                    now=now,
                )
            self.reply, self.ended = decision.reply, True
            self.clear_cookie = self.hashed is not None
            return None
        phone = self.phone = phone or PhoneRecord.new(mac, now)
        await apply_effects(
            decision.effects,
            device,
            phone,
            self.jobs,
            session=self.session,
            firmware=runtime.services.firmware,
            hasher=runtime.hasher,
            now=now,
            warn=self._warn,
        )
        remember_bootstrap_refusal(message, state, phone, self._warn)
        self._keep_session(decision, phone, hashed)
        fetch = ledger_fetch(decision, device, phone, snapshot, self.request, now)
        if fetch is not None:
            self.after.append(lambda: runtime.services.ledger.fetched(fetch))
        mark_seen(phone, self.request, now)
        phone.bound = True
        phone.contact_failures = 0  # it talks to us: contact-me backoff starts over
        if runtime.secure and phone.secure_since is None:
            phone.secure_since = now  # first session over mutual TLS: secure from now on
        self.reply, self.ended = decision.reply, decision.ended
        self.clear_cookie = decision.ended and self.hashed is not None
        return None

    async def _self_setup(
        self, session: AsyncSession, phone: PhoneRecord, pin: str, facts: DeviceFacts | None
    ) -> DeviceFacts | None:
        runtime, message, mac = self.runtime, self.message, phone.mac
        if not runtime.pin_checks.allow():
            self._warn("deployment PIN checks rate-limited", mac=mac)
            return facts
        reported = message.value(DEVICE_TYPE)
        validated = runtime.services.catalog.lookup(VENDOR, reported) if reported else None
        outcome = await bind_with_pin(
            session,
            pin=pin,
            mac=mac,
            phone=phone,
            existing=await session.get(Device, facts.id) if facts else None,
            model=validated[1] if validated else reported,  # the catalog's spelling if known
            firmware=message.value(SOFTWARE_VERSION),
            hasher=runtime.hasher,
            now=self.now,
            request_id=REQUEST_ID.get(),
            address=self.request.remote,
        )
        self.phone = phone  # its PIN failures are written even if nothing is bound
        if not outcome.bound:
            self._warn("self-setup refused: " + outcome.reason, mac=mac)
            return facts
        await session.flush()
        return await device_facts(session, mac)

    def _keep_session(self, decision: Decision, phone: PhoneRecord, hashed: str | None) -> None:
        """Store the session with the phone, or drop it after CleanUp; a new cookie if due."""
        if decision.ended:
            self._end_session(phone)
            return
        new_token = keep_session(phone, decision.state, hashed, self.now)
        if new_token is not None:
            self.new_token = new_token
            opened = token_hash(new_token)
            self.after.append(lambda: self.runtime.admission.opened(opened))

    def _end_session(self, phone: PhoneRecord) -> None:
        closed = end_session(phone)
        self.after.append(lambda: self.runtime.admission.closed(closed))


def _served(facts: DeviceFacts | None) -> DeviceFacts | None:
    """The registered Unify device behind the MAC, if it is one we serve."""
    if facts is None or facts.vendor != VENDOR or facts.status in _UNSERVED:
        return None
    return facts
