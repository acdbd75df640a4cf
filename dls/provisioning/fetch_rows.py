"""The statements a part of the ledger's fetches is written with: its fetch records and
its devices' last-seen facts, two statements per part.

Each statement takes the part's rows as one JSON text, which the database unpacks
(SQLite's ``json_each``, PostgreSQL's ``jsonb_array_elements``), rather than a parameter
set per row:

- SQLite releases the GIL while a statement runs, not while its parameters are bound:
  one parameter lets the writer thread (``dls.db.writes.WriteBursts.run_off_loop``) do
  a part's SQLite work, 20-40 us a fetch, on the other core while the loop serves polls.
  Bound row by row, as an executemany does, each row would take the GIL back.
- Either way SQLAlchemy's per-value processing (its datetime formatting alone is ~3 us a
  value) and the driver's encoding of 64 x 7 values ran on the event loop: 50-75 us of
  the loop per fetch on a slow machine, against 10-15 us for one JSON text.

SQLite libraries without ``UPDATE … FROM`` (before 3.33) or without JSON functions (an
option before 3.38) get the executemany statements instead (``rows_as_json``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Insert,
    Integer,
    Select,
    String,
    Update,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from dls.db.types import UtcDateTime, sqlite_datetime, storable, utcnow
from dls.db.writes import Write
from dls.devices.models import Device, DeviceStatus, ProvisioningRecord

if TYPE_CHECKING:
    from dls.provisioning.ledger import Fetch

__all__ = ["fetch_writes", "rows_as_json"]

_RECORD_COLUMNS = ("device_id", "file", "content_hash", "revision", "at", "address", "user_agent")
_SEEN_COLUMNS = ("device", "at", "address", "agent", "revision", "firmware")
_INTEGERS = {"device_id", "device"}


def rows_as_json(dialect: str) -> bool:
    """Whether parts go as JSON rows to this database (a dialect name)."""
    return dialect == "postgresql" or (dialect == "sqlite" and _SQLITE_JSON_ROWS)


def fetch_writes(fetches: list[Fetch], dialect: str) -> list[Write]:
    """The part's two statements for a database named by its dialect."""
    if not fetches:
        return []
    if not rows_as_json(dialect):
        return _executemany_writes(fetches)
    stamp = _STAMPS[dialect]
    records, latest = [], {}
    for f in fetches:
        at, agent, file = stamp(f.at), storable(f.user_agent, 255), storable(f.file, 128)
        records.append((f.device_id, file, f.content_hash, f.revision, at, f.address, agent))
        firmware = f.firmware_version or None
        latest[f.device_id] = (f.device_id, at, f.address, agent, f.revision, firmware)
    record, seen = _JSON_STATEMENTS[dialect]
    return [
        Write(record, {"rows": json.dumps(records)}, one_row=False),
        Write(seen, {"rows": json.dumps(list(latest.values())), "b_now": utcnow()}, one_row=False),
    ]


def _executemany_writes(fetches: list[Fetch]) -> list[Write]:
    """Two executemany statements in Core: a second of a boot storm is thousands of rows,
    and through the ORM's unit of work they cost more CPU than serving the polls did."""
    now = utcnow()
    latest: dict[int, Fetch] = {}
    for fetch in fetches:
        latest[fetch.device_id] = fetch
    records = [
        {
            "device_id": f.device_id,
            "file": storable(f.file, 128),
            "content_hash": f.content_hash,
            "revision": f.revision,
            "at": f.at,
            "address": f.address,
            "user_agent": storable(f.user_agent, 255),
        }
        for f in fetches
    ]
    seen = [
        {
            "b_device": f.device_id,
            "b_at": f.at,
            "b_address": f.address,
            "b_agent": storable(f.user_agent, 255),
            "b_revision": f.revision,
            "b_firmware": f.firmware_version or None,
            "b_now": now,
        }
        for f in latest.values()
    ]
    return [Write(_RECORD, records), Write(_SEEN, seen)]


def _seen_statement(
    device: ColumnElement[int],
    at: ColumnElement[dt.datetime],
    address: ColumnElement[str | None],
    agent: ColumnElement[str | None],
    revision: ColumnElement[str],
    firmware: ColumnElement[str | None],
) -> Update:
    """The devices' last-seen facts, and the status a successful fetch moves them to:
    provisioned on the first, active on the next (retired stays retired). On the table,
    not the entity: keyed by a bound id or joined with the JSON rows, not the ORM's bulk
    update."""
    devices = Device.__table__.c
    status = devices.status
    advanced = case(
        (status == DeviceStatus.PROVISIONED, literal(DeviceStatus.ACTIVE, status.type)),
        (
            # Spelled out, not IN: an expanding IN cannot be part of an executemany.
            or_(
                status == DeviceStatus.UNASSIGNED,
                status == DeviceStatus.ASSIGNED,
                status == DeviceStatus.SENT_TO_USER,
            ),
            literal(DeviceStatus.PROVISIONED, status.type),
        ),
        else_=status,
    )
    return (
        update(Device.__table__)
        .where(devices.id == device)
        .values(
            first_seen=func.coalesce(devices.first_seen, at),
            last_seen=at,
            last_address=address,
            last_user_agent=agent,
            last_revision=revision,
            firmware_version=func.coalesce(firmware, devices.firmware_version),
            status=advanced,
            # Its column default would be computed per statement by SQLAlchemy, which a
            # burst (dls.db.writes) does not run through: given here.
            updated_at=bindparam("b_now", type_=UtcDateTime),
        )
    )


def _sqlite_rows(names: tuple[str, ...]) -> Select[Any]:
    """A JSON array of arrays, bound as "rows", as a table with columns ``names``."""
    each = func.json_each(bindparam("rows", type_=String)).table_valued("value")
    return select(
        *(func.json_extract(each.c.value, f"$[{i}]").label(name) for i, name in enumerate(names))
    )


def _postgresql_rows(names: tuple[str, ...]) -> Select[Any]:
    each = func.jsonb_array_elements(cast(bindparam("rows", type_=String), JSONB))
    value = type_coerce(each.table_valued("value").c.value, JSONB)

    def column(index: int, name: str) -> ColumnElement[Any]:
        text = value[index].astext
        if name in _INTEGERS:
            return cast(text, Integer).label(name)
        if name == "at":  # ISO 8601 with its offset: no session time zone involved
            return cast(text, DateTime(timezone=True)).label(name)
        return text.label(name)

    return select(*(column(index, name) for index, name in enumerate(names)))


def _json_statements(rows: Callable[[tuple[str, ...]], Select[Any]]) -> tuple[Insert, Update]:
    record = insert(ProvisioningRecord.__table__).from_select(
        _RECORD_COLUMNS, rows(_RECORD_COLUMNS)
    )
    seen = rows(_SEEN_COLUMNS).subquery("seen")
    return record, _seen_statement(*(seen.c[name] for name in _SEEN_COLUMNS))


def _sqlite_takes_json_rows() -> bool:
    if sqlite3.sqlite_version_info < (3, 33):
        return False
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as connection:
            connection.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')")
    except sqlite3.OperationalError:
        return False
    return True


_SQLITE_JSON_ROWS = _sqlite_takes_json_rows()
_JSON_STATEMENTS = {
    "sqlite": _json_statements(_sqlite_rows),
    "postgresql": _json_statements(_postgresql_rows),
}
_STAMPS: dict[str, Callable[[dt.datetime], str]] = {
    "sqlite": sqlite_datetime,  # as SQLAlchemy stores UtcDateTime there
    "postgresql": lambda at: at.isoformat(),
}
_RECORD = insert(ProvisioningRecord.__table__).values(
    {name: bindparam(name) for name in _RECORD_COLUMNS}
)
_SEEN = _seen_statement(
    bindparam("b_device"),
    bindparam("b_at", type_=UtcDateTime),
    bindparam("b_address"),
    bindparam("b_agent"),
    bindparam("b_revision"),
    bindparam("b_firmware", type_=String),
)
