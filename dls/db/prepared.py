"""Statements compiled once by SQLAlchemy and run on the database driver itself.

SQLAlchemy's per-execution work (cache-key lookup, execution context, result metadata)
costs more than a point read or a single-row write on the device path. ``Prepared``
keeps what SQLAlchemy compiled for one dialect, the SQL with its bind and result
processors, so ``dls.db.reads``, ``dls.db.asyncpg_reads`` and ``dls.db.writes`` can hand
the driver the SQL and the processed values directly and get rows back as SQLAlchemy
would have returned them.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Dialect, Executable, Select

__all__ = ["Prepared", "PreparedStatements"]


class Prepared:
    """A statement compiled once for one dialect, with its bind and result processors
    (a SELECT's; an INSERT or UPDATE returns no rows)."""

    __slots__ = ("_converted", "_plan", "_row", "sql")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError("Prepared needs a dialect with positional parameters")
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Run outside SQLAlchemy's execution context, which computes them.
            raise ValueError("Prepared cannot apply Python-side column defaults; set them")
        self.sql = str(compiled)
        # Per position: (name, processor) for a parameter the caller gives, or (None,
        # value) for one the statement fixes, processed once here.
        plan: list[tuple[str | None, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                plan.append((name, process))
            else:
                value = bind.value
                plan.append((None, value if process is None or value is None else process(value)))
        self._plan = tuple(plan)
        columns = list(statement.selected_columns) if isinstance(statement, Select) else []
        results = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        # Only the columns that have a processor (enums, booleans, JSON; most have none).
        self._converted = tuple(
            (index, process) for index, process in enumerate(results) if process is not None
        )
        self._row = collections.namedtuple(  # type: ignore[misc]
            "Row", [str(column.key) for column in columns], rename=True
        )

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, process in self._plan:
            if name is None:
                values.append(process)  # fixed, already processed
                continue
            value = given[name]
            values.append(value if process is None or value is None else process(value))
        return tuple(values)

    def rows(self, found: list[tuple[Any, ...]]) -> list[Any]:
        converted, make = self._converted, self._row._make
        if not converted:
            return [make(row) for row in found]
        rows = []
        for row in found:
            values = list(row)
            for index, process in converted:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            rows.append(make(values))
        return rows


class PreparedStatements:
    """``Prepared`` per statement for one dialect. Statements are module constants (or
    built once per shape) and looked up by identity, since clause elements overload
    ``==``; each is kept alive here, so its id is never reused."""

    __slots__ = ("_dialect", "_kept", "_prepared")

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._prepared: dict[int, Prepared] = {}
        self._kept: list[Executable] = []

    def __getitem__(self, statement: Executable) -> Prepared:
        prepared = self._prepared.get(id(statement))
        if prepared is None:
            prepared = self._prepared[id(statement)] = Prepared(statement, self._dialect)
            self._kept.append(statement)
        return prepared
