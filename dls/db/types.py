"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import DateTime, Dialect, Enum, TypeDecorator

__all__ = ["UtcDateTime", "enum_column", "sqlite_datetime", "storable", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in and out.

    SQLite has no time zones and hands back naive values; comparing those with aware ones
    raises. Everything is stored as UTC and comes back aware, on both databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; dls stores aware UTC times only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def sqlite_datetime(value: dt.datetime) -> str:
    """``value`` as a ``UtcDateTime`` column holds it on SQLite, for values SQLAlchemy does
    not bind itself (a JSON document SQLite unpacks: ``dls.provisioning.ledger``), in one
    call into C where the dialect's processor goes through three Python layers; a test
    keeps the two the same."""
    if value.tzinfo is None:
        raise ValueError("naive datetime; dls stores aware UTC times only")
    utc = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    return utc.isoformat(" ", "microseconds")[:26]  # without "+00:00"


def storable(value: str | None, limit: int) -> str | None:
    """Text a request brought (a User-Agent, a requested file name, what a pattern
    captured from them) as a ``String(limit)`` column on either database holds it; None
    for nothing.

    aiohttp hands over header bytes that are not UTF-8 as lone surrogates (``\\udcff``)
    and a path's ``%00`` as NUL: neither database takes those, nor PostgreSQL a value
    past the column's length. One such value in a batch of the ledger's rows would fail
    the batch, and every retry of it. Bytes that are not UTF-8 are kept as ``\\xff``
    escapes and NUL as ``\\x00``, so the operator still sees what was sent.
    """
    if not value:
        return None
    if not value.isascii():
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no decoder made: from JSON, say
            raw = value.encode("utf-8", "backslashreplace")
        value = raw.decode("utf-8", "backslashreplace")
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    return value[:limit]


def enum_column(enum_type: type[enum.Enum]) -> Enum:
    """Enums stored as their values in a VARCHAR, so adding a member needs no type change."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )
