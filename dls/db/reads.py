"""Point reads for the device path: a prepared Core statement, no ORM session.

A phone's poll reads a few columns by an indexed key. Through an ORM session on
aiosqlite that costs about 2 ms of CPU here (session and identity map, entity loading,
JSON decoding of documents the poll does not need, several hand-offs to aiosqlite's
thread); the same indexed read as a Core statement built once costs about 0.05 ms. The
device path therefore reads through ``PointReads`` and loads ORM objects only when it
must render (see ``dls.provisioning.files.handler``).

- **SQLite**: the read runs on the event loop, on a connection of its own to the same
  file (pysqlite, autocommit, ``query_only``). In WAL mode a reader never waits for a
  writer, so an indexed point read takes tens of microseconds, less than a round trip to
  aiosqlite's thread. The rare cases where a WAL reader does wait (recovery after a
  crash) are bounded by a short busy timeout, after which the read goes through the async
  engine instead. Each statement is compiled once by SQLAlchemy (``Prepared``) and run
  on the DBAPI cursor with SQLAlchemy's own bind and result processors: SQLAlchemy's
  per-execution work (cache-key lookup, execution context, result metadata) cost more
  than the query itself here.
- **Other databases** (PostgreSQL): an async engine of its own in autocommit mode, so one
  SELECT is not wrapped in BEGIN and ROLLBACK round trips, and without the main engine's
  ping before every checkout: a read that finds its pooled connection dead (the database
  restarted) is retried once on a fresh one instead, SQLAlchemy's optimistic
  disconnect handling.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect, Engine, Executable, Select, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection, StaticPool

from dls.db.engine import POSTGRESQL_CONNECT_ARGS

__all__ = ["PointReads", "Prepared", "PreparedStatements", "Reader", "sqlite_loop_engine"]

log = logging.getLogger(__name__)

# Point reads take a fraction of a millisecond: 10 connections serve thousands a second,
# and a fixed pool never opens and closes connections under load (see dls.db.engine).
READ_POOL_SIZE = 10
SQLITE_READ_BUSY_MS = 100  # a WAL reader waits only in rare cases; then take the async path
SQLITE_READ_MMAP_BYTES = 256 * 1024 * 1024


class PointReads:
    """Small indexed reads, as cheap as the database allows; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync = sqlite_loop_engine(engine, SQLITE_READ_BUSY_MS, _read_only)
        self._prepared = PreparedStatements(self._sync.dialect) if self._sync else None
        self._async: AsyncEngine | None = None  # made on first use
        self._gate = asyncio.Semaphore(READ_POOL_SIZE)  # fair since Python 3.11
        self._connection: PoolProxiedConnection | None = None

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of ``statement`` (built once, with bound parameters), as named tuples
        or SQLAlchemy rows: index them or use the column names."""
        if self._sync is not None:
            try:
                return self._read_here(statement, parameters)
            except OperationalError as exc:
                log.info("SQLite point read waited too long; using the async engine: %s", exc)
                self._drop_connection()
        for attempt in (1, 2):
            try:
                # First come, first served: the pool's own queue lets a running task take a
                # returned connection before the waiter it was meant for, and under load
                # some polls then waited seconds (p99 1.8 s with p50 16 ms, PostgreSQL).
                async with self._gate, self._async_engine().connect() as connection:
                    return (await connection.execute(statement, dict(parameters))).all()
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    # Called with the same signature as AsyncSession.execute by code that accepts either
    # (``Reader``); iterating either result gives the rows.
    execute = rows

    async def dispose(self) -> None:
        self._drop_connection()
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None and self._async.url.get_backend_name() != "sqlite":
            await self._async.dispose()  # its own engine, not the main one
        self._async = None

    def _async_engine(self) -> AsyncEngine:
        if self._async is None:
            url = self._engine.url
            self._async = (
                self._engine.execution_options(isolation_level="AUTOCOMMIT")  # fallback only
                if url.get_backend_name() == "sqlite"
                else create_async_engine(
                    url,
                    isolation_level="AUTOCOMMIT",
                    pool_size=READ_POOL_SIZE,
                    max_overflow=0,
                    connect_args=POSTGRESQL_CONNECT_ARGS,
                )
            )
        return self._async

    def _read_here(self, statement: Select[Any], parameters: Mapping[str, Any]) -> list[Any]:
        assert self._sync is not None and self._prepared is not None
        prepared = self._prepared[statement]
        if self._connection is None:
            self._connection = self._sync.raw_connection()
        try:
            cursor = self._connection.driver_connection.execute(
                prepared.sql, prepared.parameters(parameters)
            )
        except sqlite3.OperationalError as exc:
            raise OperationalError(prepared.sql, None, exc) from exc
        return prepared.rows(cursor.fetchall())

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# Where the device path reads from: its point reads, or a session's transaction (the
# WPI messages that need one). Both answer ``await reader.execute(statement, params)``
# with something that iterates over the rows.
Reader = PointReads | AsyncSession


class Prepared:
    """A statement compiled once for one dialect, with its bind and result processors
    (a SELECT's; an INSERT or UPDATE returns no rows)."""

    __slots__ = ("_plan", "_results", "_row", "sql")

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
        self._results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns
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
        results, make = self._results, self._row._make
        return [
            make(
                value if process is None or value is None else process(value)
                for process, value in zip(results, row, strict=True)
            )
            for row in found
        ]


def sqlite_loop_engine(
    engine: AsyncEngine, busy_timeout_ms: int, on_connect: Callable[[sqlite3.Connection], None]
) -> Engine | None:
    """A synchronous engine with one connection to the async engine's SQLite file, for use
    on the event loop's thread only; None for other databases and in-memory ones (another
    connection could not see them). ``on_connect`` sets the connection's pragmas."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    loop_engine = create_sync_engine(
        url.set(drivername="sqlite+pysqlite"),
        poolclass=StaticPool,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        isolation_level="AUTOCOMMIT",  # a read needs no transaction; writes issue their own
    )
    event.listen(loop_engine, "connect", lambda connection, _record: on_connect(connection))
    return loop_engine


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


def _read_only(dbapi_connection: sqlite3.Connection) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    # Read the file through a memory map rather than copying pages into SQLite's cache:
    # a fifth less CPU per read in a 100,000-device database here.
    cursor.execute(f"PRAGMA mmap_size={SQLITE_READ_MMAP_BYTES}")
    cursor.close()
