"""The WPI session engine: one phone message in, one answer plus effects out, no I/O.

:func:`decide` takes the stored :class:`SessionState`, the parsed
:class:`WorkpointMessage` and a :class:`DeviceSnapshot`, and returns a :class:`Decision`:
the ``DLSMessage`` to send, the state to store, and the effects to persist. The HTTP
handler owns the database and the cookie; this module owns the protocol rules, so every
sequence of the reference §7 can be tested without a socket.

The rules, in the order :func:`decide` applies them:

- A message that is not ``reply-to`` or ``clean-up`` while a session is open starts a new
  interaction (the phone rebooted or lost our answer). Jobs sent but not answered stay
  pending, so they are sent again.
- Unknown devices get nothing but ``CleanUp`` and are recorded as unclaimed.
- ``fragment="next"`` parts are collected and answered with ``GetNextFragment``; the
  message is acted on only once its last part arrived [DG p.70].
- ``start-up`` reads the whole inventory first [DG p.32]; ``solicited`` and
  ``local-changes`` read it only if the server never had one.
- Managed items are compared with the inventory once per ``start-up``, ``solicited`` or
  ``local-changes`` interaction, and whenever a push-config job is pending; only items
  whose value differs are written. Then the other jobs, one per round trip, a restart or
  firmware install last because the phone goes away after it.
- ``busy`` ends the interaction with ``CleanUp`` + ``send-solicited`` and keeps the job
  queued [DG p.62/74]. Every interaction ends with ``CleanUp`` [DG p.41].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dls.provisioning.wpi.effects import (
    Effect,
    JobStatus,
    ProtocolViolation,
    RecordUnknownDevice,
    StoreInventory,
    UpdateJob,
)
from dls.provisioning.wpi.items import (
    CONFIGURATION_ATTACHED_FLAG,
    CONFIGURATION_ATTACHED_NUMBER,
    CONFIGURATION_CHANGED_FLAG,
    MAC_ADDR,
    Item,
    ItemKey,
)
from dls.provisioning.wpi.messages import (
    Action,
    CleanUp,
    Command,
    DLSMessage,
    Fragment,
    GetNextFragment,
    ReadAllItems,
    ReadItems,
    ReasonForContact,
    ReplyStatus,
    Restart,
    WorkpointMessage,
    WriteItems,
)
from dls.provisioning.wpi.reports import (
    Inventory,
    by_key,
    deployment_statuses,
    local_changes,
    reported,
)
from dls.provisioning.wpi.session import Phase, SessionState
from dls.provisioning.wpi.snapshot import DeviceSnapshot, DeviceStanding, Job, JobKind

__all__ = [
    "MAX_FRAGMENTS",
    "MAX_FRAGMENT_ITEMS",
    "MAX_ROUND_TRIPS",
    "Decision",
    "decide",
    "device_mac",
]

# Bounds on one interaction, ours: a phone that never stops asking for more (or a forged
# client) cannot keep a session row growing or a worker busy.
MAX_ROUND_TRIPS = 128
MAX_FRAGMENTS = 64
MAX_FRAGMENT_ITEMS = 20_000

# Interactions after which the phone's settings may differ from the managed ones.
# inventory-changes is left out on purpose: it reports mobility logon/logoff [DG p.12],
# and writing the device's own identity back over a mobile user's would undo the logon.
_CONFIG_REASONS = frozenset(
    {ReasonForContact.START_UP, ReasonForContact.SOLICITED, ReasonForContact.LOCAL_CHANGES}
)
# Reasons whose items describe the device, worth recording for an unclaimed phone.
_REPORTING_REASONS = _CONFIG_REASONS | {
    ReasonForContact.INVENTORY_CHANGES,
    ReasonForContact.STATUS,
}
# The phone reboots (or may) once it accepted these; nothing more is sent after them.
_DISRUPTIVE_ACTIONS = frozenset({Action.RESTART, Action.SOFTWARE_DEPLOYMENT})
_DISRUPTIVE_KINDS = frozenset({JobKind.RESTART, JobKind.FACTORY_RESET, JobKind.SOFTWARE_DEPLOYMENT})
# Items of a local-changes message that describe the report rather than a setting [DG p.40].
_LOCAL_CHANGES_META = frozenset(
    {
        MAC_ADDR,
        CONFIGURATION_CHANGED_FLAG,
        CONFIGURATION_ATTACHED_FLAG,
        CONFIGURATION_ATTACHED_NUMBER,
    }
)
_NOT_HEX = re.compile(r"[^0-9A-Fa-f]")


@dataclass(frozen=True, slots=True)
class Decision:
    reply: DLSMessage
    state: SessionState
    effects: tuple[Effect, ...]

    @property
    def ended(self) -> bool:
        """The answer is CleanUp: the caller drops the session (and its cookie)."""
        return self.state.phase is Phase.CLOSED


class _Turn:
    """One decision in the making: the message answered and the effects gathered so far."""

    __slots__ = ("device", "effects", "message")

    def __init__(self, message: WorkpointMessage, device: DeviceSnapshot) -> None:
        self.message = message
        self.device = device
        self.effects: list[Effect] = []

    def send(self, state: SessionState, command: Command) -> Decision:
        if isinstance(command, CleanUp):
            state = replace(state, phase=Phase.CLOSED)
        elif isinstance(command, ReadAllItems | ReadItems):
            state = replace(state, phase=Phase.READING, asked=command.action)
        elif not isinstance(command, GetNextFragment):
            state = replace(state, phase=Phase.AWAITING_REPLY, asked=command.action)
        return Decision(DLSMessage(self.message.nonce, command), state, tuple(self.effects))

    def end(self, state: SessionState, *, send_solicited: bool = False) -> Decision:
        return self.send(state, CleanUp(send_solicited=send_solicited))

    def abort(self, state: SessionState, reason: str) -> Decision:
        self.effects.append(ProtocolViolation(reason))
        return self.end(state)

    def update_jobs(
        self, job_ids: tuple[str, ...], status: JobStatus, failed: tuple[ItemKey, ...] = ()
    ) -> None:
        self.effects.extend(UpdateJob(job_id, status, failed) for job_id in job_ids)


def device_mac(state: SessionState, message: WorkpointMessage) -> str | None:
    """The MAC whose snapshot :func:`decide` needs: the message's own, else the session's.

    ``reply-to`` messages need not repeat ``mac-addr``, and ``status`` reports are not
    shown with it [DG p.54]; then only the session knows the device.
    """
    return message.value(MAC_ADDR) or state.mac


def decide(state: SessionState, message: WorkpointMessage, device: DeviceSnapshot) -> Decision:
    """Answer one phone message; see the module docstring for the rules.

    Pre: ``state`` is what the previous decision of this session returned (a fresh
    ``SessionState()`` when there is none); ``device`` was loaded for :func:`device_mac`.
    Post: ``reply`` echoes the message's nonce. The caller applies ``effects`` in order,
    stores ``state`` with the session unless :attr:`Decision.ended`, and then answers.
    Never raises on any parsed message: protocol faults end the session instead.
    """
    turn = _Turn(message, device)
    if state.phase is Phase.CLOSED or (
        state.phase is not Phase.NEW
        and not state.fragments
        and message.reason not in (ReasonForContact.REPLY_TO, ReasonForContact.CLEAN_UP)
    ):
        # A new interaction; the MAC stays, so a cookie cannot move to another phone.
        state = SessionState(mac=state.mac)
    state = replace(state, round_trips=state.round_trips + 1)
    if state.round_trips > MAX_ROUND_TRIPS:
        return turn.abort(state, "too many round trips in one interaction")

    mac = message.value(MAC_ADDR)
    if mac is not None:
        if state.mac is None:
            state = replace(state, mac=mac)
        elif _plain_mac(mac) != _plain_mac(state.mac):
            return turn.abort(state, "mac-addr changed within the session")

    if device.standing is DeviceStanding.UNKNOWN:
        if message.reason in _REPORTING_REASONS:
            turn.effects.append(RecordUnknownDevice(state.mac, message.items))
        return turn.end(state)
    if message.reason is ReasonForContact.CLEAN_UP:
        return turn.end(state)

    if state.fragments and not _continues_fragments(state, message):
        return turn.abort(state, "fragmented message interrupted by another")
    if message.fragment is Fragment.NEXT:
        return _collect_fragment(turn, state)
    if state.fragments:
        turn.message = replace(
            message,
            action=message.action or state.fragment_action,
            status=message.status or state.fragment_status,
            fragment=None,
            items=state.fragment_items + message.items,
        )
        state = replace(
            state,
            fragments=0,
            fragment_reason=None,
            fragment_action=None,
            fragment_status=None,
            fragment_items=(),
        )
    if state.phase is Phase.NEW:
        state = replace(state, opened_by=turn.message.reason)
    return _dispatch(turn, state)


def _plain_mac(mac: str) -> str:
    """Our normalisation: hex digits only, upper case, whatever separators firmware uses."""
    return _NOT_HEX.sub("", mac).upper()


def _continues_fragments(state: SessionState, message: WorkpointMessage) -> bool:
    # Our reading: later parts repeat the reason; `action` may or may not be repeated.
    return message.reason_text == state.fragment_reason and (
        message.action is None or message.action is state.fragment_action
    )


def _dispatch(turn: _Turn, state: SessionState) -> Decision:
    message, device = turn.message, turn.device
    match message.reason:
        case ReasonForContact.REPLY_TO:
            return _reply(turn, state)
        case ReasonForContact.START_UP:
            _store_reported(turn, message.items)
            return turn.send(state, ReadAllItems())
        case ReasonForContact.SOLICITED:
            _store_reported(turn, message.items)
            return _continue(turn, state, _known_inventory(device))
        case ReasonForContact.LOCAL_CHANGES:
            return _local_changes(turn, state)
        case ReasonForContact.INVENTORY_CHANGES:
            _store_reported(turn, message.items)
            return _continue(turn, state, _known_inventory(device))
        case ReasonForContact.STATUS:
            turn.effects.extend(deployment_statuses(message.items))
            return _continue(turn, state, _known_inventory(device))
        case _:
            return turn.abort(state, f"unknown ReasonForContact {message.reason_text[:64]!r}")


def _collect_fragment(turn: _Turn, state: SessionState) -> Decision:
    message = turn.message
    items = state.fragment_items + message.items
    if state.fragments >= MAX_FRAGMENTS or len(items) > MAX_FRAGMENT_ITEMS:
        return turn.abort(state, "fragmented message too large")
    state = replace(
        state,
        fragments=state.fragments + 1,
        fragment_reason=message.reason_text,
        fragment_action=state.fragment_action or message.action,
        fragment_status=state.fragment_status or message.status,
        fragment_items=items,
    )
    return turn.send(state, GetNextFragment())


def _reply(turn: _Turn, state: SessionState) -> Decision:
    message, asked = turn.message, state.asked
    if state.phase not in (Phase.READING, Phase.AWAITING_REPLY) or asked is None:
        return turn.abort(state, "reply-to without an outstanding request")
    # Our reading: the guide always shows `action`; if a firmware omits it, it can only
    # be answering what we asked.
    if message.action is not None and message.action is not asked:
        return turn.abort(state, f"reply-to {message.action} while {asked} was asked")
    if message.status is None:
        return turn.abort(state, "reply-to without status")
    if message.status is ReplyStatus.BUSY:
        # The phone is in a call: keep the job and have it call back when idle [DG p.62/74].
        turn.update_jobs(state.job_ids, JobStatus.BUSY)
        return turn.end(state, send_solicited=True)
    if asked is Action.READ_ALL_ITEMS:
        return _inventory_read(turn, state)
    if asked is Action.READ_ITEMS:
        if message.status is ReplyStatus.ACCEPTED:
            _store_reported(turn, message.items)
        return _continue(turn, state, _known_inventory(turn.device))
    return _job_reply(turn, state)


def _inventory_read(turn: _Turn, state: SessionState) -> Decision:
    device = turn.device
    state = replace(state, inventory_read=True)
    if turn.message.status is not ReplyStatus.ACCEPTED:
        return _continue(turn, replace(state, local_changes_unread=False), _known_inventory(device))
    values = reported(turn.message.items)
    turn.effects.append(StoreInventory(values, complete=True))
    if state.local_changes_unread and device.inventory is not None:
        previous = by_key(device.inventory)
        changed = tuple(item for item in values if previous.get(item.key) != item.value)
        if changed:
            _record_local_changes(turn, changed)
    return _continue(turn, replace(state, local_changes_unread=False), by_key(values))


def _job_reply(turn: _Turn, state: SessionState) -> Decision:
    message, device = turn.message, turn.device
    failed = tuple(item.key for item in message.items if item.failed)
    accepted = message.status is ReplyStatus.ACCEPTED
    turn.update_jobs(state.job_ids, JobStatus.ACCEPTED if accepted else JobStatus.FAILED, failed)
    # The phone now holds what we wrote, so the next comparison must see it. If the desired
    # items changed meanwhile we no longer know what was written: skip, and let the next
    # comparison write again.
    if (
        accepted
        and state.asked is Action.WRITE_ITEMS
        and state.written_revision == device.config_revision
    ):
        desired = _desired(device)
        written = tuple(
            Item(key.name, desired[key], key.index)
            for key in state.written
            if key in desired and key not in failed
        )
        if written:
            turn.effects.append(StoreInventory(written, complete=False))
    disruptive = accepted and state.asked in _DISRUPTIVE_ACTIONS
    state = replace(state, job_ids=(), written=(), written_revision="")
    if disruptive:
        return turn.end(state)
    return _continue(turn, state, _known_inventory(device))


def _local_changes(turn: _Turn, state: SessionState) -> Decision:
    device = turn.device
    attached = tuple(
        item for item in reported(turn.message.items) if item.name not in _LOCAL_CHANGES_META
    )
    if not attached:
        # Firmware before V2R2, or a report without values: find the changes by reading.
        return turn.send(replace(state, local_changes_unread=True), ReadAllItems())
    turn.effects.append(StoreInventory(attached, complete=False))
    _record_local_changes(turn, attached)
    inventory = _known_inventory(device)
    if inventory is not None:
        inventory.update(by_key(attached))
    return _continue(turn, state, inventory)


def _continue(turn: _Turn, state: SessionState, inventory: Inventory | None) -> Decision:
    """Send the next piece of work for this device, or CleanUp when there is none."""
    device = turn.device
    if device.standing is not DeviceStanding.BOUND:
        return turn.end(state)
    pending = [job for job in device.jobs if job.job_id not in state.handled_jobs]
    config_jobs = tuple(job.job_id for job in pending if job.kind is JobKind.PUSH_CONFIG)
    if config_jobs or (state.opened_by in _CONFIG_REASONS and not state.config_checked):
        if inventory is None and not state.inventory_read:
            return turn.send(state, ReadAllItems())
        state = replace(state, config_checked=True, handled_jobs=state.handled_jobs + config_jobs)
        known = inventory or {}
        changes = tuple(
            Item(key.name, value, key.index)
            for key, value in _desired(device).items()
            if known.get(key) != value
        )
        if changes:
            turn.update_jobs(config_jobs, JobStatus.SENT)
            state = replace(
                state,
                job_ids=config_jobs,
                written=tuple(item.key for item in changes),
                written_revision=device.config_revision,
            )
            return turn.send(state, WriteItems(changes))
        turn.update_jobs(config_jobs, JobStatus.UP_TO_DATE)
    # sorted() is stable: caller order within each group, disruptive jobs last.
    for job in sorted(pending, key=lambda job: job.kind in _DISRUPTIVE_KINDS):
        if job.kind is JobKind.PUSH_CONFIG:
            continue
        turn.update_jobs((job.job_id,), JobStatus.SENT)
        state = replace(
            state, job_ids=(job.job_id,), handled_jobs=(*state.handled_jobs, job.job_id)
        )
        return turn.send(state, _command(job))
    return turn.end(state)


def _command(job: Job) -> Command:
    if job.kind is JobKind.RESTART:
        return Restart()
    if job.kind is JobKind.FACTORY_RESET:
        return Restart(factory_reset=True)
    if job.deployment is None:  # Job.__post_init__ rules this out; kept for the type checker
        raise ValueError(f"job {job.job_id} has no command")
    return job.deployment


def _record_local_changes(turn: _Turn, changed: tuple[Item, ...]) -> None:
    bound = turn.device.standing is DeviceStanding.BOUND
    turn.effects.append(local_changes(changed, _desired(turn.device) if bound else {}))


def _store_reported(turn: _Turn, items: tuple[Item, ...]) -> None:
    values = reported(items)
    if values:
        turn.effects.append(StoreInventory(values, complete=False))


def _known_inventory(device: DeviceSnapshot) -> Inventory | None:
    return None if device.inventory is None else by_key(device.inventory)


def _desired(device: DeviceSnapshot) -> Inventory:
    return by_key(device.desired_items)
