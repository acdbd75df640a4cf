"""Column types: what reaches the database file is what SQLAlchemy would write."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from dls.db.types import UtcDateTime, sqlite_datetime

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
