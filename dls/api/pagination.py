"""Keyset pagination: stable under inserts, and as fast on page 1,000 as on page 1."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Integer, Select, String, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from dls.api.routing import MAX_ROW_ID, ApiError, RequestModel

__all__ = ["Page", "PageQuery", "apply_keyset", "page_of"]

T = TypeVar("T")


class PageQuery(RequestModel):
    limit: int = Field(default=50, ge=1, le=200, description="Items per page.")
    after: str | None = Field(
        default=None, max_length=400, description="The `next` cursor of the previous page."
    )


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = Field(description="Cursor for the following page; null on the last.")


def apply_keyset(
    statement: Select[Any],
    sort: InstrumentedAttribute[Any],
    tiebreak: InstrumentedAttribute[Any],
    after: str | None,
    limit: int,
    *,
    descending: bool = False,
) -> Select[Any]:
    """Order by (sort, tiebreak), start after the cursor, fetch one extra row."""
    if after is not None:
        sort_value, tie_value = _decode(after)
        sort_value, tie_value = _as_column(sort_value, sort), _as_column(tie_value, tiebreak)
        if descending:
            statement = statement.where(
                or_(sort < sort_value, and_(sort == sort_value, tiebreak < tie_value))
            )
        else:
            statement = statement.where(
                or_(sort > sort_value, and_(sort == sort_value, tiebreak > tie_value))
            )
    if descending:
        statement = statement.order_by(sort.desc(), tiebreak.desc())
    else:
        statement = statement.order_by(sort.asc(), tiebreak.asc())
    return statement.limit(limit + 1)


def page_of(rows: Sequence[T], limit: int, key: Any) -> dict[str, Any]:
    """The page's items and the cursor after its last one; ``key(row)`` -> (sort, tiebreak)."""
    items = list(rows[:limit])
    cursor = _encode(key(items[-1])) if len(rows) > limit and items else None
    return {"items": items, "next": cursor}


def _encode(values: tuple[Any, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values), default=str).encode()).decode()


def _decode(cursor: str) -> tuple[Any, Any]:
    try:
        sort_value, tie_value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise _not_a_cursor() from None
    return sort_value, tie_value


def _as_column(value: Any, column: InstrumentedAttribute[Any]) -> Any:
    """A cursor's value as ``column`` can be compared with it. A cursor is the client's
    to change: a text against a number column, a number past an INTEGER's 32 bits or a
    NUL reached the database driver, which refused the statement (a 500)."""
    kind = column.type
    if isinstance(kind, Integer) and type(value) is int and abs(value) <= MAX_ROW_ID:
        return value
    if (
        isinstance(kind, String)
        and type(value) is str
        and "\x00" not in value
        and len(value) <= (kind.length or len(value))
    ):
        return value
    raise _not_a_cursor()


def _not_a_cursor() -> ApiError:
    return ApiError.invalid("after", "not a cursor from a previous page")
