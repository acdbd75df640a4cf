"""Point reads for the device path: a prepared Core statement, no ORM session.

A phone's poll reads a few columns by an indexed key. Through an ORM session on
aiosqlite that costs about 2 ms of CPU here (session and identity map, entity loading,
JSON decoding of documents the poll does not need, several hand-offs to aiosqlite's
thread); the same indexed read as a Core statement built once costs about 0.05 ms. The
device path therefore reads only through ``PointReads`` (or, for the WPI messages that
need one, a transaction): the facts of a poll, and the settings documents when it must
render (``dls.devices.effective.settings_sources``).

- **SQLite**: the read runs on the event loop, on a connection of its own to the same
  file (pysqlite, autocommit, ``query_only``). In WAL mode a reader never waits for a
  writer, so an indexed point read takes tens of microseconds, less than a round trip to
  aiosqlite's thread. The rare cases where a WAL reader does wait (recovery after a
  crash) are bounded by a short busy timeout, after which the read goes through the async
  engine instead. Each statement is compiled once by SQLAlchemy (``Prepared``) and run
  on the DBAPI cursor with SQLAlchemy's own bind and result processors: SQLAlchemy's
  per-execution work (cache-key lookup, execution context, result metadata) cost more
  than the query itself here.
- **PostgreSQL** (asyncpg): the same compiled statements on up to READ_POOL_SIZE asyncpg
  connections of their own (``dls.db.asyncpg_reads``: an idle list, not asyncpg's pool),
  behind a fair semaphore of that size.
- **Other drivers**: an async engine of its own in autocommit mode, so one SELECT is not
  wrapped in BEGIN and ROLLBACK round trips, and without the main engine's ping before
  every checkout: a read that finds its pooled connection dead (the database restarted)
  is retried once on a fresh one instead, SQLAlchemy's optimistic disconnect handling.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Select, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection, StaticPool

from dls.db.asyncpg_reads import AsyncpgReads
from dls.db.engine import POSTGRESQL_CONNECT_ARGS
from dls.db.prepared import PreparedStatements

__all__ = ["PointReads", "Reader", "sqlite_loop_engine"]

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
        self._asyncpg = (
            AsyncpgReads(engine.url, engine.dialect, READ_POOL_SIZE)
            if engine.dialect.driver == "asyncpg"
            else None
        )

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of ``statement`` (built once, with bound parameters), as named tuples
        or SQLAlchemy rows: index them or use the column names."""
        if self._sync is not None:
            try:
                return self._read_here(statement, parameters)
            except OperationalError as exc:
                log.info("SQLite point read waited too long; using the async engine: %s", exc)
                self._drop_connection()
        if self._asyncpg is not None:
            async with self._gate:
                return await self._asyncpg.rows(statement, parameters)
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
        if self._asyncpg is not None:
            await self._asyncpg.close()
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
                    hide_parameters=True,
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


def sqlite_loop_engine(
    engine: AsyncEngine, busy_timeout_ms: int, on_connect: Callable[[sqlite3.Connection], None]
) -> Engine | None:
    """A synchronous engine with one connection to the async engine's SQLite file, for use
    on one thread (the event loop's, or a writer thread's: ``dls.db.writes``); None for
    other databases and in-memory ones (another connection could not see them).
    ``on_connect`` sets the connection's pragmas."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    loop_engine = create_sync_engine(
        url.set(drivername="sqlite+pysqlite"),
        hide_parameters=True,
        poolclass=StaticPool,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        isolation_level="AUTOCOMMIT",  # a read needs no transaction; writes issue their own
    )
    event.listen(loop_engine, "connect", lambda connection, _record: on_connect(connection))
    return loop_engine


def _read_only(dbapi_connection: sqlite3.Connection) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    # Read the file through a memory map rather than copying pages into SQLite's cache:
    # a fifth less CPU per read in a 100,000-device database here.
    cursor.execute(f"PRAGMA mmap_size={SQLITE_READ_MMAP_BYTES}")
    cursor.close()
