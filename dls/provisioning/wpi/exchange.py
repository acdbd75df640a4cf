"""One WPI message through the device path: identify, trust, self-setup, decide, record.

:func:`exchange` is the DESIGN data flow for WPI, one step per call, each with an early
return: load the session and the phone, check trust (secure mode, client certificate),
bind by deployment PIN if the phone offers one, build the engine's snapshot from the
effective settings, let the pure engine decide, persist its effects and the session in
the same transaction, and render the answer.

What is written per message (one transaction):

- the phone's ``wpi_devices`` row, always for an assigned phone: the session state
  changes with every message, and the inventory, last address and last-seen time ride
  along in the same row;
- ``device_jobs`` rows, only for messages that send or settle a job, and for a message
  opening an interaction of a phone that should install other firmware: the firmware
  offer queued as a SoftwareDeployment job (:mod:`dls.provisioning.wpi.firmware`);
- for unknown phones nothing, except a rate-limited ``unclaimed_devices`` record (plus
  the phone's ``wpi_devices`` row, which keeps its contact-me address for later);
- rarely: an audit entry (local changes, self-setup), a PIN row, a new device row.

What is read: the phone's row, the device's facts (``dls.devices.facts``: status,
tenant policy, configuration revision; one Core query, no ORM objects), its pending jobs,
and on a message opening an interaction the firmware offer. The settings documents are
loaded and resolved only when the desired items for the device's revision are not cached.

The device's last-seen facts, firmware version and status go through the provisioning
ledger's buffer, written in batches off the request path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.db.types import utcnow
from dls.devices.effective import DeviceContext, load_context, resolve_settings
from dls.devices.facts import DeviceFacts, device_facts_in
from dls.devices.inheritance import ResolutionError
from dls.devices.models import Device, DeviceStatus
from dls.devices.unify import DeviceJob, JobKind, JobState, WpiDevice
from dls.logs import REQUEST_ID
from dls.provisioning.ledger import Fetch
from dls.provisioning.wpi.effects import (
    JobStatus,
    ProtocolViolation,
    RecordDeploymentStatus,
    RecordLocalChanges,
    RecordUnknownDevice,
    StoreInventory,
    UpdateJob,
)
from dls.provisioning.wpi.engine import Decision, decide, device_mac
from dls.provisioning.wpi.firmware import (
    opens_interaction,
    queue_firmware,
    report_install_failure,
)
from dls.provisioning.wpi.identity import certificate_mac, plain_mac
from dls.provisioning.wpi.items import SOFTWARE_VERSION, Item
from dls.provisioning.wpi.messages import (
    Action,
    CleanUp,
    DLSMessage,
    ReasonForContact,
    ReplyStatus,
    WorkpointMessage,
    build_response,
)
from dls.provisioning.wpi.profile import desired_items
from dls.provisioning.wpi.runtime import SESSION_IDLE_TIMEOUT, WpiRuntime
from dls.provisioning.wpi.secure import GOTO_SECURE_MODE, bootstrap_items, issue_in_reply
from dls.provisioning.wpi.selfsetup import bind_with_pin
from dls.provisioning.wpi.session import SessionState, SessionStateError
from dls.provisioning.wpi.snapshot import DeviceSnapshot, DeviceStanding
from dls.provisioning.wpi.store import (
    CLOUD_PIN_VALUE,
    CONTACT_ME_URI,
    DEPLOYMENT_KINDS,
    DEVICE_TYPE,
    apply_job_update,
    engine_job,
    merge_inventory,
    new_phone,
    pending_jobs,
    record_deployment_status,
    record_local_changes,
    record_unclaimed,
    reported_value,
    snapshot_inventory,
    write_transaction,
)
from dls.secretbox import SecretError
from dls.tenancy.models import WpiSecureMode
from dls.tls import client_certificate

__all__ = ["Answer", "exchange", "token_hash"]

VENDOR = "unify"
LEDGER_FILE = "WPI"  # what the ledger shows as "fetched" for a WPI configuration check
_SELF_SETUP_REASONS = (ReasonForContact.START_UP, ReasonForContact.SOLICITED)
_UNSERVED = (DeviceStatus.RETIRED,)
SESSION_IDLE = dt.timedelta(seconds=SESSION_IDLE_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    new_token: str | None = None  # set this session cookie
    clear_cookie: bool = False
    ended: bool = True  # the answer is CleanUp


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clean_up(nonce: str, *, clear_cookie: bool) -> Answer:
    return Answer(build_response(DLSMessage(nonce, CleanUp())), clear_cookie=clear_cookie)


async def exchange(
    runtime: WpiRuntime, request: web.Request, message: WorkpointMessage, token: str | None
) -> Answer:
    """Answer one parsed phone message; see the module docstring for what it writes."""
    now = utcnow()
    async with write_transaction(runtime.services.sessions) as session:
        # 1. The session the cookie names, and the phone the message is about.
        state, phone, hashed = SessionState(), None, None
        if token:
            hashed = token_hash(token)
            phone = await session.scalar(
                select(WpiDevice).where(WpiDevice.session_token_hash == hashed)
            )
            if (
                phone is None
                or phone.session_state is None
                or (phone.session_expires_at is None or phone.session_expires_at <= now)
            ):
                hashed = None
            else:
                try:
                    state = SessionState.from_json(phone.session_state)
                except SessionStateError:
                    hashed = None
        mac = plain_mac(device_mac(state, message))
        if mac is None:
            runtime.quiet.warning("WPI message without a usable mac-addr")
            return _clean_up(message.nonce, clear_cookie=bool(token))
        if phone is not None and phone.mac != mac:
            # A cookie of one phone with another phone's MAC: end that session, serve none.
            runtime.quiet.warning("WPI session cookie presented with another mac-addr")
            _end_session(runtime, phone)
            return _clean_up(message.nonce, clear_cookie=True)
        if phone is None:
            phone = await session.get(WpiDevice, mac)
        facts = await device_facts_in(session, mac)

        # 2. Trust: the secure listener serves only the MAC its certificate names; a phone
        # bootstrapped to secure mode is served nowhere else.
        if runtime.secure and certificate_mac(client_certificate(request)) != mac:
            runtime.quiet.warning("client certificate names another phone", mac=mac)
            return _clean_up(message.nonce, clear_cookie=bool(token))
        device = _served(facts)
        if not runtime.secure and device is not None and phone and phone.secure_since:
            runtime.quiet.warning("phone in secure mode contacted the default port", mac=mac)
            return _clean_up(message.nonce, clear_cookie=bool(token))

        # 3. Self-setup: an unassigned phone offering a deployment PIN.
        pin = message.value(CLOUD_PIN_VALUE)
        if (
            pin
            and not runtime.secure
            and message.reason in _SELF_SETUP_REASONS
            and (device is None or device.user_id is None)
        ):
            if phone is None:
                phone = new_phone(mac, now)
                session.add(phone)
            facts, device = await _self_setup(
                runtime, request, session, now, message, mac, phone, pin, facts
            )

        # 4. Decide; an interaction's first message may queue the firmware offer first.
        opening = message if opens_interaction(state, message) else None
        snapshot, jobs = await _snapshot(runtime, session, now, mac, phone, device, opening)
        decision = decide(state, message, snapshot)

        # 5. Record.
        if device is None:
            # A MAC registered as another vendor's device, or retired, is not unclaimed.
            if facts is None:
                await _record_unknown(runtime, request, session, decision, mac, phone, now)
            reply, new_token = decision.reply, None
        else:
            if phone is None:
                phone = new_phone(mac, now)
                session.add(phone)
            await _apply(runtime, request, session, decision, device, phone, jobs, now)
            _bootstrap_refused(runtime, state, message, phone)
            new_token = _keep_session(runtime, decision, phone, hashed, now)
            _provisioned(runtime, request, decision, device, phone, snapshot, now)
            _seen(request, phone, now)
            phone.bound = True
            phone.contact_failures = 0  # it talks to us: contact-me backoff starts over
            if runtime.secure and phone.secure_since is None:
                phone.secure_since = now  # first session over mutual TLS: secure from now on
            reply = decision.reply

    # 6. Answer; a certificate is issued only now, outside the transaction.
    if device is not None:
        reply = await issue_in_reply(reply, runtime.services.pki, mac)
    try:
        body = build_response(reply)
    except ValueError:
        runtime.quiet.warning("a desired value cannot be sent in XML; answering CleanUp")
        return _clean_up(message.nonce, clear_cookie=True)
    ended = decision.ended or device is None
    return Answer(body, new_token=new_token, clear_cookie=ended and bool(token), ended=ended)


def _served(facts: DeviceFacts | None) -> DeviceFacts | None:
    """The registered Unify device behind the MAC, if it is one we serve."""
    if facts is None or facts.vendor != VENDOR or facts.status in _UNSERVED:
        return None
    return facts


async def _self_setup(
    runtime: WpiRuntime,
    request: web.Request,
    session: AsyncSession,
    now: dt.datetime,
    message: WorkpointMessage,
    mac: str,
    phone: WpiDevice,
    pin: str,
    facts: DeviceFacts | None,
) -> tuple[DeviceFacts | None, DeviceFacts | None]:
    if not runtime.pin_checks.allow():
        runtime.quiet.warning("deployment PIN checks rate-limited", mac=mac)
        return facts, _served(facts)
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
        now=now,
        request_id=REQUEST_ID.get(),
        address=request.remote,
    )
    if not outcome.bound:
        runtime.quiet.warning("self-setup refused: " + outcome.reason, mac=mac)
        return facts, _served(facts)
    await session.flush()
    facts = await device_facts_in(session, mac)
    return facts, _served(facts)


async def _snapshot(
    runtime: WpiRuntime,
    session: AsyncSession,
    now: dt.datetime,
    mac: str,
    phone: WpiDevice | None,
    device: DeviceFacts | None,
    opening: WorkpointMessage | None,
) -> tuple[DeviceSnapshot, list[DeviceJob]]:
    """What the engine sees; ``opening`` is the message if it opens an interaction.

    The desired items are cached by configuration revision: only on a miss are the
    settings documents loaded (ORM) and resolved."""
    if device is None:
        return DeviceSnapshot(DeviceStanding.UNKNOWN), []
    mode = device.wpi_secure_mode
    include_secrets = mode is not WpiSecureMode.REQUIRED or runtime.secure
    bootstrap = not runtime.secure and (
        mode is WpiSecureMode.REQUIRED
        or (mode is WpiSecureMode.BOOTSTRAP and not (phone is not None and phone.secure_refused))
    )
    revision = f"{device.revision}.{runtime.profile.digest}.{int(include_secrets)}{int(bootstrap)}"
    desired = runtime.desired.get(mac, revision)
    if desired is None:
        context = await load_context(session, device_id=device.id)
        desired = _desired(runtime, context, include_secrets) if context else None
        if desired is not None and context is not None and context.revision == device.revision:
            runtime.desired.put(mac, revision, desired)
    desired = desired or ()
    if bootstrap:
        desired += bootstrap_items(runtime.server_ca_pem, runtime.services.settings.secure_port)
    rows = await pending_jobs(session, device.id, now)
    if opening is not None:
        inventory = phone.inventory if phone else None
        rows = await queue_firmware(
            runtime.services.firmware, session, device, opening, inventory, rows, now
        )
    jobs = []
    for row in rows:
        job = engine_job(row)
        if job is None:
            row.state, row.detail = JobState.FAILED, "payload is not a valid command"
            continue
        jobs.append(job)
    inventory = snapshot_inventory(phone.inventory if phone else None, desired, runtime.hasher, mac)
    snapshot = DeviceSnapshot(DeviceStanding.BOUND, desired, inventory, tuple(jobs), revision)
    return snapshot, rows


def _desired(
    runtime: WpiRuntime, context: DeviceContext, include_secrets: bool
) -> tuple[Item, ...] | None:
    try:
        settings = resolve_settings(context, runtime.box).settings
    except (ResolutionError, SecretError, ValueError):
        # A half-configured tenant must not take its phones down: jobs still run.
        runtime.quiet.warning(
            "device settings do not resolve; writing none", mac=context.device.mac
        )
        return None
    return desired_items(runtime.profile, settings, include_secrets=include_secrets)


async def _record_unknown(
    runtime: WpiRuntime,
    request: web.Request,
    session: AsyncSession,
    decision: Decision,
    mac: str,
    phone: WpiDevice | None,
    now: dt.datetime,
) -> None:
    for effect in decision.effects:
        if not isinstance(effect, RecordUnknownDevice):
            continue
        if not (runtime.unclaimed_per_mac.allow(mac) and runtime.unclaimed_writes.allow()):
            return
        await record_unclaimed(
            session,
            mac,
            effect.items,
            address=request.remote,
            user_agent=request.headers.get("User-Agent"),
            now=now,
        )
        if phone is None:
            phone = new_phone(mac, now)
            session.add(phone)
        phone.bound = False
        uri = reported_value(effect.items, CONTACT_ME_URI)
        if uri is not None:
            phone.contact_me_uri = uri[:255]
        _seen(request, phone, now)
        return


async def _apply(
    runtime: WpiRuntime,
    request: web.Request,
    session: AsyncSession,
    decision: Decision,
    device: DeviceFacts,
    phone: WpiDevice,
    jobs: list[DeviceJob],
    now: dt.datetime,
) -> None:
    by_id = {str(row.id): row for row in jobs}
    for effect in decision.effects:
        match effect:
            case StoreInventory(items=items, complete=complete):
                phone.inventory = merge_inventory(
                    phone.inventory, items, complete=complete, hasher=runtime.hasher, mac=phone.mac
                )
                uri = reported_value(items, CONTACT_ME_URI)
                if uri is not None:
                    phone.contact_me_uri = uri[:255]
            case UpdateJob():
                row = by_id.get(effect.job_id)
                if row is None:
                    continue
                before = row.state
                apply_job_update(row, effect, now)
                await report_install_failure(runtime.services.firmware, session, row, before, now)
                if row.kind is JobKind.FACTORY_RESET and effect.status is JobStatus.ACCEPTED:
                    # The phone forgets everything, its secure-mode certificate included.
                    phone.secure_since, phone.inventory, phone.secure_refused = None, None, False
            case RecordLocalChanges():
                record_local_changes(session, device, effect, REQUEST_ID.get())
            case RecordDeploymentStatus():
                await _deployment_status(runtime, session, device, phone, effect, now)
            case ProtocolViolation(reason=reason):
                runtime.quiet.warning(
                    "WPI protocol violation; session ended", mac=phone.mac, reason=reason[:100]
                )
            case _:
                pass


async def _deployment_status(
    runtime: WpiRuntime,
    session: AsyncSession,
    device: DeviceFacts,
    phone: WpiDevice,
    status: RecordDeploymentStatus,
    now: dt.datetime,
) -> None:
    """File one file's result on its job; a failed firmware image fails the install."""
    recent = list(
        await session.scalars(
            select(DeviceJob)
            .where(DeviceJob.device_id == device.id, DeviceJob.kind.in_(DEPLOYMENT_KINDS))
            .order_by(DeviceJob.id.desc())
            .limit(20)
        )
    )
    before = {row.id: row.state for row in recent}
    row = record_deployment_status(recent, status, now)
    if row is None:
        runtime.quiet.warning("deployment status for a file no job sent", mac=phone.mac)
        return
    await report_install_failure(runtime.services.firmware, session, row, before[row.id], now)


def _bootstrap_refused(
    runtime: WpiRuntime, asked: SessionState, message: WorkpointMessage, phone: WpiDevice
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
        runtime.quiet.warning("phone refused the secure-mode bootstrap", mac=phone.mac)
        phone.secure_refused = True


def _keep_session(
    runtime: WpiRuntime, decision: Decision, phone: WpiDevice, hashed: str | None, now: dt.datetime
) -> str | None:
    """Store the session with the phone, or drop it after CleanUp; the new cookie, if any."""
    if decision.ended:
        _end_session(runtime, phone)
        return None
    new_token = None
    if hashed is None or phone.session_token_hash != hashed:
        new_token = secrets.token_urlsafe(24)
        hashed = token_hash(new_token)
        runtime.admission.opened(hashed)
    phone.session_token_hash = hashed
    phone.session_state = decision.state.to_json()
    phone.session_expires_at = now + SESSION_IDLE
    return new_token


def _end_session(runtime: WpiRuntime, phone: WpiDevice) -> None:
    runtime.admission.closed(phone.session_token_hash)
    phone.session_token_hash = phone.session_state = phone.session_expires_at = None


def _provisioned(
    runtime: WpiRuntime,
    request: web.Request,
    decision: Decision,
    device: DeviceFacts,
    phone: WpiDevice,
    snapshot: DeviceSnapshot,
    now: dt.datetime,
) -> None:
    """An interaction that compared the configuration and ended cleanly is a "fetch".

    It goes to the provisioning ledger like a 3rd-party phone's file fetch: buffered and
    written in batches, with the device's last-seen facts, firmware and status
    (provisioned, then active), so none of that is a synchronous write here. The
    revision recorded is the device's configuration revision, as for files, so the
    outdated-devices list treats Unify phones like the others.
    """
    if not decision.ended or not decision.state.config_checked:
        return
    if any(isinstance(effect, ProtocolViolation) for effect in decision.effects):
        return
    stored = {(name, index): value for name, index, value in phone.inventory or ()}
    runtime.services.ledger.fetched(
        Fetch(
            device_id=device.id,
            file=LEDGER_FILE,
            content_hash=hashlib.sha256(snapshot.config_revision.encode()).hexdigest(),
            revision=device.revision[:64],
            at=now,
            address=request.remote,
            user_agent=request.headers.get("User-Agent"),
            firmware_version=(stored.get((SOFTWARE_VERSION, None)) or "")[:64] or None,
        )
    )


def _seen(request: web.Request, phone: WpiDevice, now: dt.datetime) -> None:
    phone.last_address = request.remote
    transport = request.transport
    local = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(local, tuple) and local:
        phone.server_address = str(local[0])[:64]
    phone.last_seen = now
