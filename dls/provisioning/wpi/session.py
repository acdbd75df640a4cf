"""The progress of one WPI interaction, as a plain value that fits in a database row.

A WPI interaction spans several HTTP round trips (start-up, ReadAllItems, fragments, one
round trip per job, CleanUp), and with several workers behind a load balancer each trip
may land on another process. So nothing about it lives in memory: the caller stores
:meth:`SessionState.to_json` with the session and hands :meth:`SessionState.from_json`
back to the engine on the next message.

Item *values* appear here only while a fragmented message is being reassembled (the
reference §7.8 requires acting only after the final part); for written items only the
keys are kept, so the row never holds a secret the server sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from dls.provisioning.wpi.items import Item, ItemKey
from dls.provisioning.wpi.messages import Action, ReasonForContact, ReplyStatus

__all__ = ["Phase", "SessionState", "SessionStateError"]

_E = TypeVar("_E", bound=StrEnum)
_FORMAT = 1  # bump when the JSON shape changes; older rows are then refused, not misread


class Phase(StrEnum):
    """What the session waits for."""

    NEW = "new"  # nothing answered yet (or only GetNextFragment for the opening message)
    READING = "reading"  # sent ReadAllItems or ReadItems, waiting for the items
    AWAITING_REPLY = "awaiting-reply"  # sent a job or a write-back, waiting for reply-to
    CLOSED = "closed"  # sent CleanUp; the next message starts a new interaction


class SessionStateError(ValueError):
    """A stored session state cannot be read; start a new session instead."""


@dataclass(frozen=True, slots=True)
class SessionState:
    phase: Phase = Phase.NEW
    opened_by: ReasonForContact | None = None  # the reason of the opening message
    mac: str | None = None  # mac-addr of the opening message, to catch a swap mid-session
    asked: Action | None = None  # last command sent, other than GetNextFragment and CleanUp
    job_ids: tuple[str, ...] = ()  # jobs the outstanding command settles
    written: tuple[ItemKey, ...] = ()  # keys of the outstanding WriteItems
    written_revision: str = ""  # config revision those items were taken from
    handled_jobs: tuple[str, ...] = ()  # jobs sent in this session, never sent twice
    inventory_read: bool = False  # a ReadAllItems was answered in this session
    config_checked: bool = False  # desired items were compared with the inventory
    local_changes_unread: bool = False  # local-changes came without items; find them by reading
    round_trips: int = 0
    fragments: int = 0  # parts received so far of a fragmented message
    fragment_reason: str | None = None  # ReasonForContact text of that message
    fragment_action: Action | None = None
    fragment_status: ReplyStatus | None = None
    fragment_items: tuple[Item, ...] = ()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionState:
        try:
            data = json.loads(text)
        except ValueError:
            raise SessionStateError("session state is not JSON") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "phase": self.phase.value,
            "opened_by": _optional_value(self.opened_by),
            "mac": self.mac,
            "asked": _optional_value(self.asked),
            "job_ids": list(self.job_ids),
            "written": [[key.name, key.index] for key in self.written],
            "written_revision": self.written_revision,
            "handled_jobs": list(self.handled_jobs),
            "inventory_read": self.inventory_read,
            "config_checked": self.config_checked,
            "local_changes_unread": self.local_changes_unread,
            "round_trips": self.round_trips,
            "fragments": self.fragments,
            "fragment_reason": self.fragment_reason,
            "fragment_action": _optional_value(self.fragment_action),
            "fragment_status": _optional_value(self.fragment_status),
            "fragment_items": [
                [item.name, item.index, item.value, item.failed] for item in self.fragment_items
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SessionState:
        """Rebuild a state from :meth:`to_dict`; anything malformed raises SessionStateError."""
        try:
            if data["format"] != _FORMAT:
                raise SessionStateError("session state has another format version")
            return cls(
                phase=Phase(data["phase"]),
                opened_by=_optional(ReasonForContact, data["opened_by"]),
                mac=_optional_str(data["mac"]),
                asked=_optional(Action, data["asked"]),
                job_ids=tuple(_str(job) for job in data["job_ids"]),
                written=tuple(
                    ItemKey(_str(name), _optional_int(index)) for name, index in data["written"]
                ),
                written_revision=_str(data["written_revision"]),
                handled_jobs=tuple(_str(job) for job in data["handled_jobs"]),
                inventory_read=_bool(data["inventory_read"]),
                config_checked=_bool(data["config_checked"]),
                local_changes_unread=_bool(data["local_changes_unread"]),
                round_trips=_int(data["round_trips"]),
                fragments=_int(data["fragments"]),
                fragment_reason=_optional_str(data["fragment_reason"]),
                fragment_action=_optional(Action, data["fragment_action"]),
                fragment_status=_optional(ReplyStatus, data["fragment_status"]),
                fragment_items=tuple(
                    Item(_str(name), _str(value), _optional_int(index), _bool(failed))
                    for name, index, value, failed in data["fragment_items"]
                ),
            )
        except SessionStateError:
            raise
        except (KeyError, TypeError, ValueError):
            raise SessionStateError("session state is malformed") from None


def _optional_value(member: StrEnum | None) -> str | None:
    return None if member is None else member.value


def _optional(kind: type[_E], value: Any) -> _E | None:
    return None if value is None else kind(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return value
