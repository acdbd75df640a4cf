"""What the engine asks its caller to persist, as typed values instead of database calls.

The engine decides; the caller applies these effects (in list order) before it answers
the phone, or at least before it decides the next message of the same session, because
the next snapshot is expected to reflect them. None of them carries a value the engine
invented: item values are what the phone reported or what the snapshot held.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dls.provisioning.wpi.items import Item, ItemKey

__all__ = [
    "Conflict",
    "DeploymentStatus",
    "Effect",
    "JobStatus",
    "ProtocolViolation",
    "RecordDeploymentStatus",
    "RecordLocalChanges",
    "RecordUnknownDevice",
    "StoreInventory",
    "UpdateJob",
]


class JobStatus(StrEnum):
    """Where a job stands. Only the last three take it off the device's queue."""

    SENT = "sent"  # the command went out; still pending until the phone answers
    BUSY = "busy"  # the phone was busy; keep it queued for the solicited call-back
    ACCEPTED = "accepted"
    FAILED = "failed"
    UP_TO_DATE = "up-to-date"  # push-config found nothing to write


class DeploymentStatus(StrEnum):
    """``file-deployment-status`` [DG p.54]."""

    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoreInventory:
    """Items the phone reported; ``complete`` replaces the inventory, otherwise merge."""

    items: tuple[Item, ...]
    complete: bool


@dataclass(frozen=True, slots=True)
class RecordUnknownDevice:
    """A phone we do not know contacted us: keep it as unclaimed (the caller rate-limits)."""

    mac: str | None
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A managed item changed on the phone; the desired value is being written back.

    The desired value is deliberately absent: it may be a secret, and the caller has it.
    """

    key: ItemKey
    reported: str


@dataclass(frozen=True, slots=True)
class RecordLocalChanges:
    """Settings changed on the phone: ``accepted`` stand, ``conflicts`` are overwritten."""

    accepted: tuple[Item, ...]
    conflicts: tuple[Conflict, ...]


@dataclass(frozen=True, slots=True)
class UpdateJob:
    job_id: str
    status: JobStatus
    failed_items: tuple[ItemKey, ...] = ()  # items the phone marked status="failed"


@dataclass(frozen=True, slots=True)
class RecordDeploymentStatus:
    """One file's result from a ``status`` message, matched by the caller on the name."""

    index: int | None
    file_name: str | None
    file_type: str | None
    status: DeploymentStatus
    date: str | None  # format not captured in our sources (reference §17): stored verbatim
    time: str | None


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The phone did something the protocol does not allow; the session was ended."""

    reason: str


Effect = (
    StoreInventory
    | RecordUnknownDevice
    | RecordLocalChanges
    | UpdateJob
    | RecordDeploymentStatus
    | ProtocolViolation
)
