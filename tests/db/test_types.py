"""Column types: what reaches the database file is what SQLAlchemy would write."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from dls.db.types import UtcDateTime, sqlite_datetime, storable

_DIALECT = sqlite.dialect()
_BIND = UtcDateTime().dialect_impl(_DIALECT).bind_processor(_DIALECT)
_ZONES = st.builds(
    dt.timezone, st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timedelta(minutes=minutes))
)


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=_ZONES | st.just(dt.UTC),
    )
)
def test_sqlite_datetime_is_the_text_the_dialect_writes(value: dt.datetime) -> None:
    # Stored text is compared as text (last_seen ranges, retention by age): one format.
    assert _BIND is not None
    assert sqlite_datetime(value) == _BIND(value)


def test_sqlite_datetime_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_datetime(dt.datetime(2026, 11, 27, 6, 0))


@given(st.text(st.characters(codec=None, exclude_categories=())), st.integers(1, 300))
def test_storable_text_is_what_either_database_takes(text: str, limit: int) -> None:
    stored = storable(text, limit)
    if not text:
        assert stored is None
        return
    assert stored is not None and len(stored) <= limit
    stored.encode("utf-8")  # no lone surrogate: neither database takes one
    assert "\x00" not in stored  # PostgreSQL's text takes no NUL
    if text.isprintable() and len(text) <= limit and text == text.encode(errors="replace").decode():
        assert stored == text  # what needs no change is kept as it came


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        # aiohttp's str of the header bytes b"Yealink \xff\xfe": what was sent stays readable
        ("Yealink \udcff\udcfe", "Yealink \\xff\\xfe"),
        ("a\x00b.cfg", "a\\x00b.cfg"),  # a path's %00
        ("Gerät ✓", "Gerät ✓"),
        ("\ud800", "\\ud800"),  # a surrogate no header decoder makes: JSON's \ud800
        ("", None),
        (None, None),
        ("x" * 300, "x" * 255),
    ],
)
def test_storable_examples(sent: str | None, stored: str | None) -> None:
    assert storable(sent, 255) == stored
