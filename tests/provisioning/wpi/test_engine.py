"""The WPI session engine, one reference §7 sequence per test.

``Phone`` drives :func:`decide` the way the HTTP handler will: the state goes through
JSON between messages (as it would through a database row), and a tiny fake persistence
applies the effects to the next snapshot, so multi-step sequences see their own writes.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import count
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dls.provisioning.wpi.effects import (
    Conflict,
    DeploymentStatus,
    Effect,
    JobStatus,
    ProtocolViolation,
    RecordDeploymentStatus,
    RecordLocalChanges,
    RecordUnknownDevice,
    StoreInventory,
    UpdateJob,
)
from dls.provisioning.wpi.engine import (
    MAX_FRAGMENTS,
    MAX_ROUND_TRIPS,
    Decision,
    decide,
    device_mac,
)
from dls.provisioning.wpi.items import Item, ItemKey
from dls.provisioning.wpi.messages import (
    Action,
    CleanUp,
    Command,
    DeploymentFile,
    FileDeployment,
    FileType,
    Fragment,
    GetNextFragment,
    ReadAllItems,
    ReasonForContact,
    ReplyStatus,
    Restart,
    SoftwareDeployment,
    WorkpointMessage,
    WriteItems,
)
from dls.provisioning.wpi.session import Phase, SessionState, SessionStateError
from dls.provisioning.wpi.snapshot import DeviceSnapshot, DeviceStanding, Job, JobKind

MAC = "00:1A:E8:12:34:56"
IDENTITY = (
    Item("device-type", "OpenStage 40"),
    Item("software-version", "V3 R5.12.0"),
    Item("mac-addr", MAC),
    Item("e164", "4930123456"),
)
DESIRED = (
    Item("reg-addr", "sip.example.net"),
    Item("sntp-addr", "ntp.example.net"),
    Item("sip-pwd", "changeme"),
    Item("function-key-def", "1", 3),
)
# What a phone reports on ReadAllItems: sntp-addr and the key differ, sip-pwd is not shown.
REPORTED = (
    *IDENTITY,
    Item("reg-addr", "sip.example.net"),
    Item("sntp-addr", "192.168.1.1"),
    Item("function-key-def", "0", 3),
    Item("ssh-enable", "false"),
)
LOGO = FileDeployment((DeploymentFile("https://dls.example.net/files/logo.png", FileType.LOGO),))
FIRMWARE = SoftwareDeployment("https://dls.example.net/fw/os40.img", "3.5.16.0")

_nonces = count(1)
E = TypeVar("E")


def phone(
    reason: ReasonForContact | str,
    *items: Item,
    action: Action | None = None,
    status: ReplyStatus | None = None,
    fragment: Fragment | None = None,
) -> WorkpointMessage:
    known = reason if isinstance(reason, ReasonForContact) else None
    return WorkpointMessage(
        nonce=f"{next(_nonces):032X}",
        reason=known,
        reason_text=str(reason),
        action=action,
        status=status,
        fragment=fragment,
        items=items,
    )


def reply(action: Action, status: ReplyStatus, *items: Item, **extra: object) -> WorkpointMessage:
    return phone(ReasonForContact.REPLY_TO, *items, action=action, status=status, **extra)  # type: ignore[arg-type]


def device(
    standing: DeviceStanding = DeviceStanding.BOUND,
    *,
    jobs: tuple[Job, ...] = (),
    inventory: tuple[Item, ...] | None = None,
    desired: tuple[Item, ...] = DESIRED,
) -> DeviceSnapshot:
    return DeviceSnapshot(
        standing=standing,
        desired_items=desired if standing is DeviceStanding.BOUND else (),
        inventory=inventory,
        jobs=jobs,
        config_revision="r1",
    )


def _persist(snapshot: DeviceSnapshot, effects: tuple[Effect, ...]) -> DeviceSnapshot:
    """What the caller's persistence would do with the effects, in memory."""
    inventory = (
        None
        if snapshot.inventory is None
        else dict((item.key, item) for item in snapshot.inventory)
    )
    jobs = list(snapshot.jobs)
    for effect in effects:
        if isinstance(effect, StoreInventory):
            if effect.complete or inventory is None:
                inventory = {}
            inventory.update((item.key, item) for item in effect.items)
        elif isinstance(effect, UpdateJob) and effect.status in (
            JobStatus.ACCEPTED,
            JobStatus.FAILED,
            JobStatus.UP_TO_DATE,
        ):
            jobs = [job for job in jobs if job.job_id != effect.job_id]
    return replace(
        snapshot,
        inventory=None if inventory is None else tuple(inventory.values()),
        jobs=tuple(jobs),
    )


class Phone:
    """One phone talking to the engine through a stored (JSON) session state."""

    def __init__(self, snapshot: DeviceSnapshot) -> None:
        self.snapshot = snapshot
        self.stored = SessionState().to_json()
        self.log: list[Decision] = []

    def send(self, message: WorkpointMessage) -> Decision:
        decision = decide(SessionState.from_json(self.stored), message, self.snapshot)
        assert decision.reply.nonce == message.nonce
        assert SessionState.from_json(decision.state.to_json()) == decision.state
        if any(isinstance(effect, ProtocolViolation) for effect in decision.effects):
            assert decision.reply.command == CleanUp()
        self.stored = decision.state.to_json()
        self.snapshot = _persist(self.snapshot, decision.effects)
        self.log.append(decision)
        return decision

    @property
    def state(self) -> SessionState:
        return SessionState.from_json(self.stored)


def effects_of(decision: Decision, kind: type[E]) -> list[E]:
    return [effect for effect in decision.effects if isinstance(effect, kind)]


# --- unknown and unbound devices -------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        ReasonForContact.START_UP,
        ReasonForContact.SOLICITED,
        ReasonForContact.LOCAL_CHANGES,
        ReasonForContact.INVENTORY_CHANGES,
        ReasonForContact.STATUS,
    ],
)
def test_unknown_device_is_recorded_and_gets_clean_up(reason: ReasonForContact) -> None:
    decision = Phone(device(DeviceStanding.UNKNOWN)).send(phone(reason, *IDENTITY))
    assert decision.reply.command == CleanUp()
    assert decision.effects == (RecordUnknownDevice(MAC, IDENTITY),)
    assert decision.ended


@pytest.mark.parametrize("reason", [ReasonForContact.REPLY_TO, ReasonForContact.CLEAN_UP, "nap"])
def test_unknown_device_other_messages_get_clean_up_only(reason: ReasonForContact | str) -> None:
    decision = Phone(device(DeviceStanding.UNKNOWN)).send(
        phone(reason, action=Action.WRITE_ITEMS, status=ReplyStatus.ACCEPTED)
    )
    assert decision.reply.command == CleanUp()
    assert decision.effects == ()


def test_unknown_device_fragment_is_not_collected() -> None:
    decision = Phone(device(DeviceStanding.UNKNOWN)).send(
        phone(ReasonForContact.START_UP, *IDENTITY, fragment=Fragment.NEXT)
    )
    assert decision.reply.command == CleanUp()


def test_unbound_device_is_read_but_gets_no_work() -> None:
    unbound = Phone(device(DeviceStanding.UNBOUND, jobs=(Job("j1", JobKind.RESTART),)))
    assert unbound.send(phone(ReasonForContact.START_UP, *IDENTITY)).reply.command == ReadAllItems()
    decision = unbound.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *REPORTED))
    assert decision.reply.command == CleanUp()
    assert decision.effects == (StoreInventory(REPORTED, complete=True),)


def test_unbound_device_solicited_gets_clean_up() -> None:
    decision = Phone(device(DeviceStanding.UNBOUND)).send(phone(ReasonForContact.SOLICITED))
    assert decision.reply.command == CleanUp()


# --- start-up [DG p.32] ----------------------------------------------------------------


def test_start_up_reads_then_writes_only_differences_then_jobs_then_clean_up() -> None:
    jobs = (
        Job("restart", JobKind.RESTART),
        Job("config", JobKind.PUSH_CONFIG),
        Job("logo", JobKind.FILE_DEPLOYMENT, LOGO),
    )
    handset = Phone(device(jobs=jobs, inventory=()))

    first = handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    assert first.reply.command == ReadAllItems()
    assert first.effects == (StoreInventory(IDENTITY, complete=False),)
    assert handset.state.phase is Phase.READING

    write = handset.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *REPORTED))
    assert write.effects == (
        StoreInventory(REPORTED, complete=True),
        UpdateJob("config", JobStatus.SENT),
    )
    assert write.reply.command == WriteItems(
        (
            Item("sntp-addr", "ntp.example.net"),
            Item("sip-pwd", "changeme"),
            Item("function-key-def", "1", 3),
        )
    )
    assert handset.state.written == (
        ItemKey("sntp-addr"),
        ItemKey("sip-pwd"),
        ItemKey("function-key-def", 3),
    )
    assert "changeme" not in handset.stored  # keys only: no secret in the session row

    logo = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED))
    assert logo.effects == (
        UpdateJob("config", JobStatus.ACCEPTED),
        StoreInventory(
            (
                Item("sntp-addr", "ntp.example.net"),
                Item("sip-pwd", "changeme"),
                Item("function-key-def", "1", 3),
            ),
            complete=False,
        ),
        UpdateJob("logo", JobStatus.SENT),
    )
    assert logo.reply.command == LOGO  # the restart was queued first but goes last

    restart = handset.send(reply(Action.FILE_DEPLOYMENT, ReplyStatus.ACCEPTED))
    assert restart.reply.command == Restart()
    assert effects_of(restart, UpdateJob) == [
        UpdateJob("logo", JobStatus.ACCEPTED),
        UpdateJob("restart", JobStatus.SENT),
    ]

    end = handset.send(reply(Action.RESTART, ReplyStatus.ACCEPTED))
    assert end.reply.command == CleanUp()
    assert end.effects == (UpdateJob("restart", JobStatus.ACCEPTED),)
    assert end.ended
    assert handset.snapshot.jobs == ()


def test_start_up_with_nothing_to_do() -> None:
    handset = Phone(device(desired=REPORTED[4:6]))
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *REPORTED))
    assert decision.reply.command == CleanUp()
    assert decision.effects == (StoreInventory(REPORTED, complete=True),)


def test_push_config_with_nothing_to_write_is_up_to_date() -> None:
    handset = Phone(
        device(
            desired=REPORTED[4:6],
            jobs=(Job("config", JobKind.PUSH_CONFIG), Job("r", JobKind.RESTART)),
        )
    )
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *REPORTED))
    assert decision.reply.command == Restart()
    assert effects_of(decision, UpdateJob) == [
        UpdateJob("config", JobStatus.UP_TO_DATE),
        UpdateJob("r", JobStatus.SENT),
    ]


def test_failed_items_are_not_taken_into_the_inventory() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(
        reply(
            Action.READ_ALL_ITEMS,
            ReplyStatus.ACCEPTED,
            *REPORTED,
            Item("dls-server-ca", "", 1, failed=True),
        )
    )
    assert effects_of(decision, StoreInventory) == [StoreInventory(REPORTED, complete=True)]


def test_failed_read_still_delivers_work_against_what_is_known() -> None:
    handset = Phone(device(inventory=None))
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.FAILED))
    # Only the identity items are known, so every managed item is written.
    assert decision.reply.command == WriteItems(DESIRED)


# --- solicited [DG p.42] ---------------------------------------------------------------


def test_solicited_writes_against_the_stored_inventory() -> None:
    handset = Phone(device(jobs=(Job("config", JobKind.PUSH_CONFIG),), inventory=REPORTED))
    decision = handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    assert isinstance(decision.reply.command, WriteItems)
    assert [item.name for item in decision.reply.command.items] == [
        "sntp-addr",
        "sip-pwd",
        "function-key-def",
    ]
    end = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED))
    assert end.reply.command == CleanUp()


def test_solicited_without_inventory_reads_first() -> None:
    handset = Phone(device(jobs=(Job("config", JobKind.PUSH_CONFIG),), inventory=None))
    assert handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY)).reply.command == (
        ReadAllItems()
    )
    decision = handset.send(reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *REPORTED))
    assert isinstance(decision.reply.command, WriteItems)


def test_solicited_and_up_to_date_gets_clean_up() -> None:
    decision = Phone(device(desired=REPORTED[4:6], inventory=REPORTED)).send(
        phone(ReasonForContact.SOLICITED, *IDENTITY)
    )
    assert decision.reply.command == CleanUp()


# --- reply-to: accepted, failed, busy [DG p.62/74] ------------------------------------


def test_busy_keeps_the_job_and_asks_for_a_call_back() -> None:
    handset = Phone(device(jobs=(Job("logo", JobKind.FILE_DEPLOYMENT, LOGO),), inventory=()))
    handset.snapshot = replace(handset.snapshot, desired_items=())
    assert handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY)).reply.command == LOGO

    busy = handset.send(reply(Action.FILE_DEPLOYMENT, ReplyStatus.BUSY))
    assert busy.reply.command == CleanUp(send_solicited=True)
    assert busy.effects == (UpdateJob("logo", JobStatus.BUSY),)
    assert busy.ended
    assert [job.job_id for job in handset.snapshot.jobs] == ["logo"]

    # Once idle the phone calls back, solicited, and the job goes out again.
    assert handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY)).reply.command == LOGO
    done = handset.send(reply(Action.FILE_DEPLOYMENT, ReplyStatus.ACCEPTED))
    assert done.effects == (UpdateJob("logo", JobStatus.ACCEPTED),)
    assert done.reply.command == CleanUp()


def test_busy_during_a_write_back() -> None:
    handset = Phone(device(inventory=REPORTED))
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    busy = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.BUSY))
    assert busy.reply.command == CleanUp(send_solicited=True)
    assert busy.effects == ()


def test_failed_job_is_reported_with_its_failed_items_and_work_goes_on() -> None:
    jobs = (Job("config", JobKind.PUSH_CONFIG), Job("r", JobKind.RESTART))
    handset = Phone(device(jobs=jobs, inventory=REPORTED))
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    decision = handset.send(
        reply(Action.WRITE_ITEMS, ReplyStatus.FAILED, Item("function-key-def", "", 3, failed=True))
    )
    assert decision.effects == (
        UpdateJob("config", JobStatus.FAILED, (ItemKey("function-key-def", 3),)),
        UpdateJob("r", JobStatus.SENT),
    )
    assert decision.reply.command == Restart()


def test_accepted_write_with_failed_items_stores_only_the_rest() -> None:
    handset = Phone(device(inventory=REPORTED))
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    decision = handset.send(
        reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED, Item("sip-pwd", "", failed=True))
    )
    assert decision.effects == (
        StoreInventory(
            (Item("sntp-addr", "ntp.example.net"), Item("function-key-def", "1", 3)),
            complete=False,
        ),
    )


def test_write_is_not_stored_when_the_desired_items_changed_meanwhile() -> None:
    handset = Phone(device(inventory=REPORTED))
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    handset.snapshot = replace(
        handset.snapshot,
        desired_items=(Item("sntp-addr", "ntp2.example.net"),),
        config_revision="r2",
        jobs=(Job("config-2", JobKind.PUSH_CONFIG),),
    )
    decision = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED))
    assert effects_of(decision, StoreInventory) == []
    # The new push-config job compares again, in the same interaction.
    assert decision.reply.command == WriteItems((Item("sntp-addr", "ntp2.example.net"),))


@pytest.mark.parametrize(
    ("job", "command"),
    [
        (Job("r", JobKind.RESTART), Restart()),
        (Job("f", JobKind.FACTORY_RESET), Restart(factory_reset=True)),
        (Job("s", JobKind.SOFTWARE_DEPLOYMENT, FIRMWARE), FIRMWARE),
    ],
)
def test_nothing_is_sent_after_a_disruptive_job(job: Job, command: Command) -> None:
    handset = Phone(device(jobs=(job, Job("again", JobKind.RESTART)), inventory=(), desired=()))
    assert handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY)).reply.command == command
    decision = handset.send(reply(command.action, ReplyStatus.ACCEPTED))
    assert decision.reply.command == CleanUp()
    assert decision.effects == (UpdateJob(job.job_id, JobStatus.ACCEPTED),)


def test_a_job_is_sent_once_per_interaction_even_if_the_snapshot_lags() -> None:
    handset = Phone(
        device(jobs=(Job("logo", JobKind.FILE_DEPLOYMENT, LOGO),), inventory=(), desired=())
    )
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    handset.snapshot = replace(handset.snapshot, jobs=(Job("logo", JobKind.FILE_DEPLOYMENT, LOGO),))
    # The caller has not yet taken the failed job off the queue: it is still not resent.
    decision = decide(
        handset.state, reply(Action.FILE_DEPLOYMENT, ReplyStatus.FAILED), handset.snapshot
    )
    assert decision.reply.command == CleanUp()


# --- local changes [DG p.40] -----------------------------------------------------------

FLAGS = (
    Item("mac-addr", MAC),
    Item("configuration-changed-flag", "true"),
    Item("configuration-attached-flag", "true"),
    Item("configuration-attached-number", "2"),
)


def test_local_change_to_a_managed_item_is_written_back_and_logged() -> None:
    synced = (*IDENTITY, *DESIRED)
    handset = Phone(device(inventory=synced))
    decision = handset.send(
        phone(
            ReasonForContact.LOCAL_CHANGES,
            *FLAGS,
            Item("sntp-addr", "192.168.1.1"),
            Item("ssh-enable", "true"),
        )
    )
    assert decision.effects == (
        StoreInventory((Item("sntp-addr", "192.168.1.1"), Item("ssh-enable", "true")), False),
        RecordLocalChanges(
            accepted=(Item("ssh-enable", "true"),),
            conflicts=(Conflict(ItemKey("sntp-addr"), "192.168.1.1"),),
        ),
    )
    assert decision.reply.command == WriteItems((Item("sntp-addr", "ntp.example.net"),))
    end = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED))
    assert end.reply.command == CleanUp()
    assert end.effects == (StoreInventory((Item("sntp-addr", "ntp.example.net"),), False),)


def test_local_change_to_unmanaged_items_is_accepted() -> None:
    handset = Phone(device(inventory=(*IDENTITY, *DESIRED)))
    decision = handset.send(
        phone(ReasonForContact.LOCAL_CHANGES, *FLAGS, Item("language-iso", "de"))
    )
    assert decision.effects[1] == RecordLocalChanges((Item("language-iso", "de"),), ())
    assert decision.reply.command == CleanUp()


def test_local_changes_without_items_are_read_and_compared() -> None:
    before = (*IDENTITY, *DESIRED, Item("language-iso", "en"))
    handset = Phone(device(inventory=before))
    flags_only = (FLAGS[0], FLAGS[1], Item("configuration-attached-flag", "false"))
    assert handset.send(phone(ReasonForContact.LOCAL_CHANGES, *flags_only)).reply.command == (
        ReadAllItems()
    )
    after = (*IDENTITY, *DESIRED[:1], Item("sntp-addr", "10.0.0.1"), *DESIRED[2:])
    decision = handset.send(
        reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *after, Item("language-iso", "de"))
    )
    assert effects_of(decision, RecordLocalChanges) == [
        RecordLocalChanges(
            accepted=(Item("language-iso", "de"),),
            conflicts=(Conflict(ItemKey("sntp-addr"), "10.0.0.1"),),
        )
    ]
    assert decision.reply.command == WriteItems((Item("sntp-addr", "ntp.example.net"),))


def test_local_changes_of_an_unbound_device_are_all_accepted() -> None:
    decision = Phone(device(DeviceStanding.UNBOUND, inventory=())).send(
        phone(ReasonForContact.LOCAL_CHANGES, *FLAGS, Item("sntp-addr", "10.0.0.1"))
    )
    assert effects_of(decision, RecordLocalChanges) == [
        RecordLocalChanges((Item("sntp-addr", "10.0.0.1"),), ())
    ]
    assert decision.reply.command == CleanUp()


# --- inventory changes and status [DG p.12/54] -----------------------------------------


def test_inventory_changes_are_stored_and_do_not_trigger_a_config_write() -> None:
    items = (Item("mac-addr", MAC), Item("sip-mobility-state", "0"), Item("e164", "777"))
    decision = Phone(device(inventory=REPORTED)).send(
        phone(ReasonForContact.INVENTORY_CHANGES, *items)
    )
    assert decision.effects == (StoreInventory(items, complete=False),)
    assert decision.reply.command == CleanUp()


def test_inventory_changes_deliver_pending_jobs() -> None:
    decision = Phone(device(jobs=(Job("r", JobKind.RESTART),), inventory=REPORTED)).send(
        phone(ReasonForContact.INVENTORY_CHANGES, Item("mac-addr", MAC))
    )
    assert decision.reply.command == Restart()


def test_status_records_each_file_by_index() -> None:
    decision = Phone(device(inventory=REPORTED)).send(
        phone(
            ReasonForContact.STATUS,
            Item("file-deployment-name", "logo-acme.png", 1),
            Item("file-deployment-type", "LOGO", 1),
            Item("file-deployment-status", "ok", 1),
            Item("file-deployment-date", "2024-05-01", 1),
            Item("file-deployment-time", "12:00", 1),
            Item("file-deployment-name", "ring.mp3", 2),
            Item("file-deployment-status", "failed", 2),
            Item("file-deployment-name", "odd.png", 3),
            Item("file-deployment-status", "weird", 3),
            Item("file-deployment-name", "no-status.png", 4),
        )
    )
    assert decision.effects == (
        RecordDeploymentStatus(
            1, "logo-acme.png", "LOGO", DeploymentStatus.OK, "2024-05-01", "12:00"
        ),
        RecordDeploymentStatus(2, "ring.mp3", None, DeploymentStatus.FAILED, None, None),
        RecordDeploymentStatus(3, "odd.png", None, DeploymentStatus.FAILED, None, None),
    )
    assert decision.reply.command == CleanUp()


# --- fragments [DG p.70] ---------------------------------------------------------------


def test_fragmented_read_is_collected_then_acted_on() -> None:
    handset = Phone(device(jobs=(Job("config", JobKind.PUSH_CONFIG),), desired=DESIRED[:2]))
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    parts = [REPORTED[:3], REPORTED[3:6], REPORTED[6:]]
    for part in parts[:-1]:
        message = reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, *part, fragment=Fragment.NEXT)
        decision = handset.send(message)
        assert decision.reply.command == GetNextFragment()
        assert decision.reply.nonce == message.nonce
        assert decision.effects == ()
    assert handset.state.fragments == 2
    # Later parts need not repeat the action or status.
    final = phone(ReasonForContact.REPLY_TO, *parts[-1], fragment=Fragment.FINAL)
    decision = handset.send(final)
    assert decision.effects[0] == StoreInventory(REPORTED, complete=True)
    assert decision.reply.command == WriteItems((Item("sntp-addr", "ntp.example.net"),))
    assert handset.state.fragments == 0
    assert handset.state.fragment_items == ()


def test_fragmented_opening_message() -> None:
    handset = Phone(device(inventory=()))
    first = handset.send(phone(ReasonForContact.LOCAL_CHANGES, *FLAGS, fragment=Fragment.NEXT))
    assert first.reply.command == GetNextFragment()
    decision = handset.send(phone(ReasonForContact.LOCAL_CHANGES, Item("language-iso", "de")))
    assert effects_of(decision, RecordLocalChanges) == [
        RecordLocalChanges((Item("language-iso", "de"),), ())
    ]


def test_too_many_fragments_end_the_session() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    for _ in range(MAX_FRAGMENTS):
        handset.send(
            reply(
                Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, Item("a", "1"), fragment=Fragment.NEXT
            )
        )
    decision = handset.send(
        reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, Item("a", "1"), fragment=Fragment.NEXT)
    )
    assert decision.reply.command == CleanUp()
    assert effects_of(decision, ProtocolViolation) == [
        ProtocolViolation("fragmented message too large")
    ]


def test_interrupted_fragments_end_the_session() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    handset.send(
        reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, Item("a", "1"), fragment=Fragment.NEXT)
    )
    decision = handset.send(phone(ReasonForContact.INVENTORY_CHANGES, Item("a", "2")))
    assert effects_of(decision, ProtocolViolation) != []
    assert decision.ended


# --- clean-up, unknown reasons, protocol violations -----------------------------------


def test_phone_clean_up_mid_session_leaves_the_job_pending() -> None:
    handset = Phone(device(jobs=(Job("r", JobKind.RESTART),), inventory=(), desired=()))
    handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    decision = handset.send(phone(ReasonForContact.CLEAN_UP))
    assert decision.reply.command == CleanUp()
    assert decision.effects == ()
    assert [job.job_id for job in handset.snapshot.jobs] == ["r"]


def test_unknown_reason_gets_clean_up() -> None:
    decision = Phone(device()).send(phone("reboot-please", *IDENTITY))
    assert decision.reply.command == CleanUp()
    assert decision.effects == (ProtocolViolation("unknown ReasonForContact 'reboot-please'"),)


@pytest.mark.parametrize(
    "message",
    [
        reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED),  # nothing was asked yet
    ],
)
def test_reply_without_a_session(message: WorkpointMessage) -> None:
    decision = Phone(device()).send(message)
    assert decision.effects == (ProtocolViolation("reply-to without an outstanding request"),)


def test_reply_to_something_else_than_asked() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(reply(Action.WRITE_ITEMS, ReplyStatus.ACCEPTED))
    assert decision.effects == (
        ProtocolViolation("reply-to WriteItems while ReadAllItems was asked"),
    )


def test_reply_without_status() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(phone(ReasonForContact.REPLY_TO, action=Action.READ_ALL_ITEMS))
    assert decision.effects == (ProtocolViolation("reply-to without status"),)


def test_reply_without_action_answers_what_was_asked() -> None:
    handset = Phone(device(desired=()))
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(
        phone(ReasonForContact.REPLY_TO, *REPORTED, status=ReplyStatus.ACCEPTED)
    )
    assert decision.effects == (StoreInventory(REPORTED, complete=True),)


def test_mac_swap_within_a_session_is_refused() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(
        reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, Item("mac-addr", "00:1A:E8:00:00:01"))
    )
    assert decision.effects == (ProtocolViolation("mac-addr changed within the session"),)
    # Another separator style is the same MAC.
    handset = Phone(device(desired=()))
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(
        reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED, Item("mac-addr", "001ae8123456"))
    )
    assert effects_of(decision, ProtocolViolation) == []


def test_new_start_up_mid_session_starts_over() -> None:
    handset = Phone(device(jobs=(Job("r", JobKind.RESTART),), inventory=(), desired=()))
    first = handset.send(phone(ReasonForContact.SOLICITED, *IDENTITY))
    assert first.state.handled_jobs == ("r",)
    decision = handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    assert decision.reply.command == ReadAllItems()
    assert decision.state.handled_jobs == ()
    assert decision.state.round_trips == 1


def test_new_session_keeps_the_mac_of_the_cookie() -> None:
    handset = Phone(device())
    handset.send(phone(ReasonForContact.START_UP, *IDENTITY))
    decision = handset.send(phone(ReasonForContact.START_UP, Item("mac-addr", "00:00:00:00:00:01")))
    assert decision.effects == (ProtocolViolation("mac-addr changed within the session"),)


def test_round_trips_are_bounded() -> None:
    state = replace(SessionState(), phase=Phase.READING, asked=Action.READ_ALL_ITEMS)
    state = replace(state, round_trips=MAX_ROUND_TRIPS)
    decision = decide(state, reply(Action.READ_ALL_ITEMS, ReplyStatus.ACCEPTED), device())
    assert decision.effects == (ProtocolViolation("too many round trips in one interaction"),)


def test_closed_session_starts_over() -> None:
    closed = replace(SessionState(), phase=Phase.CLOSED, round_trips=9, handled_jobs=("x",))
    decision = decide(closed, phone(ReasonForContact.START_UP, *IDENTITY), device())
    assert decision.reply.command == ReadAllItems()
    assert decision.state.round_trips == 1
    assert decision.state.opened_by is ReasonForContact.START_UP


def test_device_mac() -> None:
    assert device_mac(SessionState(), phone(ReasonForContact.START_UP, *IDENTITY)) == MAC
    assert device_mac(SessionState(mac="m"), phone(ReasonForContact.STATUS)) == "m"
    assert device_mac(SessionState(), phone(ReasonForContact.STATUS)) is None


# --- jobs and the snapshot ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "deployment"),
    [
        (JobKind.FILE_DEPLOYMENT, None),
        (JobKind.SOFTWARE_DEPLOYMENT, LOGO),
        (JobKind.RESTART, FIRMWARE),
        (JobKind.PUSH_CONFIG, LOGO),
    ],
)
def test_job_payload_must_match_its_kind(kind: JobKind, deployment: object) -> None:
    with pytest.raises(ValueError, match="job"):
        Job("j", kind, deployment)  # type: ignore[arg-type]


# --- the session state as a database value --------------------------------------------

_keys = st.builds(ItemKey, st.text(max_size=10), st.none() | st.integers(0, 99))
_states = st.builds(
    SessionState,
    phase=st.sampled_from(Phase),
    opened_by=st.none() | st.sampled_from(ReasonForContact),
    mac=st.none() | st.text(max_size=20),
    asked=st.none() | st.sampled_from(Action),
    job_ids=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    written=st.lists(_keys, max_size=3).map(tuple),
    written_revision=st.text(max_size=8),
    handled_jobs=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    inventory_read=st.booleans(),
    config_checked=st.booleans(),
    local_changes_unread=st.booleans(),
    round_trips=st.integers(0, 200),
    fragments=st.integers(0, 70),
    fragment_reason=st.none() | st.text(max_size=20),
    fragment_action=st.none() | st.sampled_from(Action),
    fragment_status=st.none() | st.sampled_from(ReplyStatus),
    fragment_items=st.lists(
        st.builds(
            Item,
            st.text(max_size=8),
            st.text(max_size=8),
            st.none() | st.integers(0, 9),
            st.booleans(),
        ),
        max_size=3,
    ).map(tuple),
)


@given(_states)
def test_session_state_json_round_trip(state: SessionState) -> None:
    assert SessionState.from_json(state.to_json()) == state
    assert SessionState.from_dict(state.to_dict()) == state


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"format": 99}',
        SessionState().to_json().replace('"phase":"new"', '"phase":"dancing"'),
        SessionState().to_json().replace('"round_trips":0', '"round_trips":true'),
        SessionState().to_json().replace('"job_ids":[]', '"job_ids":[1]'),
        SessionState().to_json().replace('"fragment_items":[]', '"fragment_items":[[1]]'),
    ],
)
def test_malformed_session_state_is_refused(text: str) -> None:
    with pytest.raises(SessionStateError):
        SessionState.from_json(text)


# --- properties over whole conversations ----------------------------------------------

_jobs = st.lists(
    st.sampled_from(
        [
            Job("config", JobKind.PUSH_CONFIG),
            Job("restart", JobKind.RESTART),
            Job("reset", JobKind.FACTORY_RESET),
            Job("logo", JobKind.FILE_DEPLOYMENT, LOGO),
            Job("firmware", JobKind.SOFTWARE_DEPLOYMENT, FIRMWARE),
        ]
    ),
    unique_by=lambda job: job.job_id,
    max_size=5,
).map(tuple)
_snapshots = st.builds(
    device,
    standing=st.sampled_from(DeviceStanding),
    jobs=_jobs,
    inventory=st.none() | st.sampled_from([(), REPORTED, (*IDENTITY, *DESIRED)]),
    desired=st.sampled_from([(), DESIRED, REPORTED[4:6]]),
)
_opening = st.sampled_from(
    [
        ReasonForContact.START_UP,
        ReasonForContact.SOLICITED,
        ReasonForContact.LOCAL_CHANGES,
        ReasonForContact.INVENTORY_CHANGES,
        ReasonForContact.STATUS,
    ]
)


@settings(max_examples=200)
@given(snapshot=_snapshots, opening=_opening, statuses=st.lists(st.sampled_from(ReplyStatus)))
def test_every_interaction_ends_with_clean_up(
    snapshot: DeviceSnapshot, opening: ReasonForContact, statuses: list[ReplyStatus]
) -> None:
    """A phone that answers every request (accepted, failed or busy) always gets CleanUp."""
    handset = Phone(snapshot)
    decision = handset.send(phone(opening, *IDENTITY))
    answers = iter(statuses)
    for _ in range(len(snapshot.jobs) + 4):
        if decision.ended:
            break
        command = decision.reply.command
        status = next(answers, ReplyStatus.ACCEPTED)
        items = REPORTED if isinstance(command, ReadAllItems) else ()
        decision = handset.send(reply(command.action, status, *items))
    assert decision.ended
    assert decision.reply.command in (CleanUp(), CleanUp(send_solicited=True))
    sent = [
        effect.job_id
        for step in handset.log
        for effect in effects_of(step, UpdateJob)
        if effect.status is JobStatus.SENT
    ]
    assert len(sent) == len(set(sent))  # no job twice in one interaction
    if snapshot.standing is not DeviceStanding.BOUND:
        assert sent == []


_any_message = st.builds(
    WorkpointMessage,
    nonce=st.text("0123456789ABCDEF", min_size=1, max_size=4),
    reason=st.none() | st.sampled_from(ReasonForContact),
    reason_text=st.sampled_from(["", "start-up", "reply-to", "x"]),
    action=st.none() | st.sampled_from(Action),
    status=st.none() | st.sampled_from(ReplyStatus),
    fragment=st.none() | st.sampled_from(Fragment),
    items=st.lists(
        st.sampled_from([*REPORTED, *FLAGS, Item("file-deployment-status", "ok", 1)]), max_size=4
    ).map(tuple),
)


@settings(max_examples=200)
@given(snapshot=_snapshots, messages=st.lists(_any_message, min_size=1, max_size=12))
def test_any_message_sequence_gets_an_answer(
    snapshot: DeviceSnapshot, messages: list[WorkpointMessage]
) -> None:
    """Whatever the phone sends in whatever order, the engine answers and never raises."""
    handset = Phone(snapshot)
    for message in messages:
        decision = handset.send(message)
        assert decision.state.round_trips <= MAX_ROUND_TRIPS + 1
        if snapshot.standing is DeviceStanding.UNKNOWN:
            assert decision.reply.command == CleanUp()
