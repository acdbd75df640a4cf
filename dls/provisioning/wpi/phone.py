"""A Unify phone's row and its job queue as the device path reads and writes them.

Plain records, not ORM objects: a WPI message reads the phone's row and its pending jobs
(indexed point reads, ``dls.db.reads``), the engine decides, and the changed columns go
back as guarded single-row statements (``dls.db.writes``):

- the phone's row: ``UPDATE ... WHERE mac = ? AND version = <read>``, bumping
  ``version``; a new phone is an INSERT, which fails if another message inserted it;
- a job: ``UPDATE ... WHERE id = ? AND state = <read> AND attempts = <read>``.

A guard that misses raises ``WriteConflict`` and the message is handled again from a
fresh read, so nothing another message wrote meanwhile is lost. Only the columns the
device path owns are written; the contact-me dispatcher's (``last_contacted_at``,
``next_contact_at``) are left to it.

The same records and statements serve the transactional path (self-setup, firmware
offers, unknown phones, ...), which reads and writes them in its session's transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import Executable, bindparam, insert, or_, select, update

from dls.db.reads import Reader
from dls.db.writes import Write
from dls.devices.unify import ACTIVE_JOB_STATES, DeviceJob, JobKind, JobState, WpiDevice

__all__ = [
    "JobRecord",
    "JobRow",
    "PhoneRecord",
    "deployment_jobs",
    "pending_jobs",
    "phone_by_mac",
    "phone_by_token",
]


_PHONES = WpiDevice.__table__
_JOBS = DeviceJob.__table__
RECENT_DEPLOYMENTS = 20  # jobs searched for the one a deployment status reports on


@dataclass(slots=True, eq=False)
class PhoneRecord:
    """The device path's columns of one ``wpi_devices`` row."""

    mac: str
    bound: bool = False
    inventory: Any = None  # [[name, index, value], ...] (dls.provisioning.wpi.store)
    last_address: str | None = None
    server_address: str | None = None
    contact_me_uri: str | None = None
    contact_failures: int = 0
    secure_since: dt.datetime | None = None
    secure_refused: bool = False
    pin_failures: int = 0
    pin_failures_since: dt.datetime | None = None
    session_token_hash: str | None = None
    session_state: str | None = None
    session_expires_at: dt.datetime | None = None
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    version: int = 0
    read: tuple[Any, ...] | None = field(default=None, repr=False)  # None: not in the table

    @classmethod
    def new(cls, mac: str, now: dt.datetime) -> PhoneRecord:
        return cls(mac, first_seen=now, last_seen=now)

    @classmethod
    def from_row(cls, row: Any) -> PhoneRecord:
        record = cls(*row)
        record.read = tuple(row)
        return record

    def write(self) -> Write | None:
        """The write that stores this record's changes, or None if nothing changed."""
        values = {name: getattr(self, name) for name in _PHONE_WRITTEN}
        if self.read is None:
            return Write(_INSERT_PHONE, {"k_mac": self.mac, **values})
        read = self.read[1:-1]
        changed = {
            name: value
            for (name, value), before in zip(values.items(), read, strict=True)
            if value is not before and value != before
        }
        if not changed:
            return None
        statement = _phone_update(tuple(changed))
        return Write(statement, {"k_mac": self.mac, "k_version": self.version, **changed})


_PHONE_COLUMNS = tuple(f.name for f in fields(PhoneRecord) if f.name != "read")
_PHONE_WRITTEN = _PHONE_COLUMNS[1:-1]  # not the key, not the version
_PHONE = select(*(_PHONES.c[name] for name in _PHONE_COLUMNS))
_PHONE_BY_MAC = _PHONE.where(_PHONES.c.mac == bindparam("mac"))
_PHONE_BY_TOKEN = _PHONE.where(_PHONES.c.session_token_hash == bindparam("token"))
# Parameters are named after their columns, the keys' with a prefix (SQLAlchemy reserves
# a column's own name for its SET value).
_INSERT_PHONE = insert(_PHONES).values(
    mac=bindparam("k_mac"),
    version=1,
    **{name: bindparam(name) for name in _PHONE_WRITTEN},
)


@functools.cache
def _phone_update(columns: tuple[str, ...]) -> Executable:
    """The guarded UPDATE of ``columns``; one per set of columns a message changes (a
    handful: session fields, last seen, inventory), each built once."""
    return (
        update(_PHONES)
        .where(_PHONES.c.mac == bindparam("k_mac"), _PHONES.c.version == bindparam("k_version"))
        .values(version=_PHONES.c.version + 1, **{name: bindparam(name) for name in columns})
    )


@dataclass(slots=True, eq=False)
class JobRecord:
    """One ``device_jobs`` row; the functions of ``store`` change it like a ``DeviceJob``."""

    id: int
    device_id: int
    kind: JobKind
    payload: dict[str, Any]
    state: JobState
    attempts: int
    detail: str | None
    result: dict[str, Any] | None
    updated_at: dt.datetime
    expires_at: dt.datetime
    read: tuple[Any, ...] = field(default=(), repr=False)

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        record = cls(*row)
        record.read = (record.state, record.attempts, record.detail, record.result)
        return record

    def write(self) -> Write | None:
        if (self.state, self.attempts, self.detail, self.result) == self.read:
            return None
        state, attempts = self.read[:2]
        return Write(
            _UPDATE_JOB,
            {
                "k_id": self.id,
                "k_state": state,
                "k_attempts": attempts,
                "state": self.state,
                "attempts": self.attempts,
                "detail": self.detail,
                "result": self.result,
                "updated_at": self.updated_at,
            },
        )


# A job as the WPI path holds it: a record it read, or a row the ORM created in the same
# transaction (a firmware offer's job). The functions of ``store`` and ``firmware``
# change either alike.
JobRow = JobRecord | DeviceJob
_JOB_COLUMNS = tuple(f.name for f in fields(JobRecord) if f.name != "read")
_UPDATE_JOB = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("k_id"),
        _JOBS.c.state == bindparam("k_state"),
        _JOBS.c.attempts == bindparam("k_attempts"),
    )
    .values(
        **{
            name: bindparam(name)
            for name in ("state", "attempts", "detail", "result", "updated_at")
        }
    )
)
_JOB = select(*(_JOBS.c[name] for name in _JOB_COLUMNS))
# An OR of equalities, not IN: an IN list is expanded per execution, which a statement
# prepared once (PointReads) cannot be.
_PENDING = _JOB.where(
    _JOBS.c.device_id == bindparam("device_id"),
    or_(*(_JOBS.c.state == state for state in ACTIVE_JOB_STATES)),
    _JOBS.c.expires_at > bindparam("now"),
).order_by(_JOBS.c.id)
_DEPLOYMENTS = (
    _JOB.where(
        _JOBS.c.device_id == bindparam("device_id"),
        or_(
            _JOBS.c.kind == JobKind.FILE_DEPLOYMENT,
            _JOBS.c.kind == JobKind.SOFTWARE_DEPLOYMENT,
        ),
    )
    .order_by(_JOBS.c.id.desc())
    .limit(RECENT_DEPLOYMENTS)
)


async def phone_by_mac(source: Reader, mac: str) -> PhoneRecord | None:
    found = list(await source.execute(_PHONE_BY_MAC, {"mac": mac}))
    return PhoneRecord.from_row(found[0]) if found else None


async def phone_by_token(source: Reader, token_hash: str) -> PhoneRecord | None:
    found = list(await source.execute(_PHONE_BY_TOKEN, {"token": token_hash}))
    return PhoneRecord.from_row(found[0]) if found else None


async def pending_jobs(source: Reader, device_id: int, now: dt.datetime) -> list[JobRecord]:
    """The device's queue, oldest first: one indexed range scan."""
    found = await source.execute(_PENDING, {"device_id": device_id, "now": now})
    return [JobRecord.from_row(row) for row in found]


async def deployment_jobs(source: Reader, device_id: int) -> list[JobRecord]:
    """The device's latest file and software deployments, newest first."""
    found = await source.execute(_DEPLOYMENTS, {"device_id": device_id})
    return [JobRecord.from_row(row) for row in found]
