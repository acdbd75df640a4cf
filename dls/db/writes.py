"""Short write transactions for the device path: a few Core statements, all or nothing.

A WPI message ends in one or two row writes: the phone's row (its session and what it
reported) and, when a command went out or came back, a job. Written through an ORM
session on aiosqlite, each statement was a hand-off to aiosqlite's thread, and SQLite's
write lock was held across all of them while the event loop served other phones, so the
other writers slept in SQLite's busy handler (bench/wpi.py: p99 of seconds).

- **SQLite**: the burst runs on the event loop, on a connection of its own: ``BEGIN
  IMMEDIATE``, the statements (compiled once, ``Prepared``), ``COMMIT``; the write lock
  is held for a fraction of a millisecond. The loop never blocks on the lock: that
  connection's busy timeout is zero. When another connection holds the lock (another
  worker, an admin transaction that may itself be waiting for this loop) the burst
  looks again a few times over 30 ms, sleeping asynchronously, and then goes through
  the async engine, which waits in its own thread. The ledger writes its batches as
  bursts too: its transaction, held across aiosqlite hand-offs, used to send a tenth of
  the device path's writes the slow way (bench/wpi.py: 105 -> 229 interactions/s).
  That connection does not checkpoint the WAL when a commit crosses SQLite's threshold,
  which stalled the loop for 10-20 ms every second or two under a ledger's load: a
  thread checkpoints (PASSIVE: never waiting for readers or writers) at most once a
  second after its commits.
- **Writes too large for the loop** (the ledger's parts: a few dozen inserts and updates,
  a millisecond or more of SQLite's own work) go to ``run_off_loop``: on SQLite the same
  burst in a thread of its own, on a connection of its own that waits for the lock
  there. SQLite releases the GIL while a statement runs, not while its parameters are
  bound, so such bursts should be few statements with few parameters (the ledger hands
  each part over as one JSON text, ``json_each`` unpacks it): the loop then serves
  polls on one core while SQLite inserts on the other.
- **Other databases** (PostgreSQL): one transaction on the main engine.

Every single-row statement must touch exactly one row. The device path reads outside any lock and
guards each UPDATE by what it read (compare-and-set); a statement that touches no row
means someone wrote in between: nothing is written and ``WriteConflict`` is raised, for
the caller to read again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection

from dls.db.engine import WRITER
from dls.db.prepared import PreparedStatements
from dls.db.reads import sqlite_loop_engine

log = logging.getLogger(__name__)

__all__ = ["Write", "WriteBursts", "WriteConflict", "run_burst"]

# Seconds between looks at a taken SQLite write lock before waiting in a thread instead.
LOCK_RETRY_DELAYS = (0.001, 0.002, 0.004, 0.008, 0.016)
CHECKPOINT_EVERY_S = 1.0
# How long the writer thread's connection waits for SQLite's write lock: below the
# ledger's wait for a flush at shutdown (dls.provisioning.ledger.STOP_WAIT_S), so a
# write is over, committed or failed, before anything gives up on it.
THREAD_BUSY_TIMEOUT_MS = 5000


class WriteConflict(Exception):
    """A guarded statement touched no row: what it was based on changed meanwhile."""


class _LockTaken(Exception):
    """SQLite's write lock is held by another connection; take the waiting path."""


@dataclass(frozen=True, slots=True)
class Write:
    """A single-row INSERT or UPDATE: a statement built once per shape, with its bound
    parameters' values (building SQLAlchemy statements per message cost more CPU than
    running them, so callers keep one statement per set of columns). Or, with a list of
    parameter sets, an executemany, or with ``one_row`` false a statement of many rows,
    whose row counts are not checked (the ledger's)."""

    statement: Executable
    parameters: Mapping[str, Any] | list[Mapping[str, Any]]
    one_row: bool = True

    @property
    def guarded(self) -> bool:
        """Whether it must touch exactly one row (``WriteConflict`` otherwise)."""
        return self.one_row and not isinstance(self.parameters, list)


class WriteBursts:
    """All-or-nothing bursts of single-row writes; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync = sqlite_loop_engine(engine, 0, _writer_pragmas)  # never wait on the loop
        self._prepared = PreparedStatements(self._sync.dialect) if self._sync else None
        self._connection: PoolProxiedConnection | None = None
        self._checkpointing = False
        self._last_checkpoint = 0.0
        # run_off_loop's: one thread, with its own connection and compiled statements.
        self._thread_sync = sqlite_loop_engine(engine, THREAD_BUSY_TIMEOUT_MS, _writer_pragmas)
        self._thread_prepared = (
            PreparedStatements(self._thread_sync.dialect) if self._thread_sync else None
        )
        self._thread_connection: PoolProxiedConnection | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name ("sqlite", "postgresql")."""
        return self._engine.dialect.name

    async def run(self, writes: Sequence[Write]) -> None:
        """Execute ``writes`` in one transaction; ``WriteConflict`` if one misses."""
        if not writes:
            return
        if self._sync is not None:
            # The lock is mostly held by the ledger's or an admin's short transaction:
            # look again a few times, waiting without blocking the loop, before the
            # async engine's connection waits for it in its thread.
            for delay in LOCK_RETRY_DELAYS:
                try:
                    self._run_here(writes)
                    return
                except _LockTaken:
                    await asyncio.sleep(delay)
        async with self._engine.connect() as connection:
            await connection.execution_options(**WRITER)
            async with connection.begin():
                await run_burst(connection, writes)

    async def run_off_loop(self, writes: Sequence[Write]) -> None:
        """``run`` for a burst whose database work would hold the loop for long: on SQLite
        in the writer thread, which waits for the write lock there (up to
        THREAD_BUSY_TIMEOUT_MS); elsewhere as ``run``. Statements that touch one row are
        guarded as in ``run``; see the module docstring for what suits this path."""
        if not writes:
            return
        if self._thread_sync is None:
            await self.run(writes)
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="dls-sqlite-writer")
        await asyncio.get_running_loop().run_in_executor(self._thread, self._run_in_thread, writes)
        self._committed()

    def dispose(self) -> None:
        if self._thread is not None:
            self._thread.submit(self._close_thread_connection).result()
            self._thread.shutdown()
            self._thread = None
        if self._thread_sync is not None:
            self._thread_sync.dispose()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._sync is not None:
            self._sync.dispose()

    def _run_here(self, writes: Sequence[Write]) -> None:
        assert self._sync is not None and self._prepared is not None
        if self._connection is None:
            self._connection = self._sync.raw_connection()
        try:
            _burst(self._connection, self._prepared, writes)
        finally:
            if not self._connection.is_valid:
                self._connection = None
        self._committed()

    def _run_in_thread(self, writes: Sequence[Write]) -> None:
        """In the writer thread: a lock still taken after the busy timeout is SQLite's
        "database is locked", the database being unavailable for now."""
        assert self._thread_sync is not None and self._thread_prepared is not None
        if self._thread_connection is None:
            self._thread_connection = self._thread_sync.raw_connection()
        try:
            _burst(self._thread_connection, self._thread_prepared, writes)
        except _LockTaken as exc:
            raise OperationalError("BEGIN IMMEDIATE", None, exc.__cause__) from exc  # type: ignore[arg-type]
        finally:
            if not self._thread_connection.is_valid:
                self._thread_connection = None

    def _close_thread_connection(self) -> None:
        if self._thread_connection is not None:
            self._thread_connection.close()
            self._thread_connection = None

    def _committed(self) -> None:
        now = time.monotonic()
        if self._checkpointing or now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        database = self._engine.url.database
        try:
            done = asyncio.get_running_loop().run_in_executor(None, _checkpoint, database)
        except RuntimeError:  # shutting down: the executor is gone, the commit stands
            return
        self._checkpointing, self._last_checkpoint = True, now
        done.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            log.warning("WAL checkpoint failed: %s", done.exception())


async def run_burst(connection: AsyncConnection | AsyncSession, writes: Sequence[Write]) -> None:
    """The writes in the open transaction of ``connection`` or of a session (which
    flushes its pending ORM changes first)."""
    for write in writes:
        if isinstance(write.parameters, list):
            await connection.execute(write.statement, write.parameters)
            continue
        result = await connection.execute(write.statement, dict(write.parameters))
        if write.guarded and result.rowcount != 1:
            raise WriteConflict(str(write.statement).split("\n", 1)[0][:80])


def _burst(
    connection: PoolProxiedConnection, prepared: PreparedStatements, writes: Sequence[Write]
) -> None:
    """``writes`` in one transaction on a pooled sqlite3 connection in autocommit mode;
    a connection left in no state to go on with is invalidated (its owner opens another)."""
    cursor = connection.driver_connection.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise _LockTaken from exc
        connection.invalidate()
        raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
    try:
        for write in writes:
            statement = prepared[write.statement]
            try:
                if isinstance(write.parameters, list):
                    cursor.executemany(
                        statement.sql, [statement.parameters(one) for one in write.parameters]
                    )
                else:
                    cursor.execute(statement.sql, statement.parameters(write.parameters))
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(statement.sql, None, exc) from exc
            except sqlite3.OperationalError as exc:
                raise OperationalError(statement.sql, None, exc) from exc
            if write.guarded and cursor.rowcount != 1:
                raise WriteConflict(statement.sql[:80])
        cursor.execute("COMMIT")
    except BaseException:
        try:
            cursor.execute("ROLLBACK")
        except sqlite3.Error:
            connection.invalidate()  # no transaction left to end, or a broken one
        raise


def _writer_pragmas(dbapi_connection: sqlite3.Connection) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # as the main engine's connections
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # a thread does it (_checkpoint)
    cursor.close()


def _checkpoint(database: str) -> None:
    """In a worker thread: copy the WAL's committed pages into the database file. One
    call into SQLite, which releases the GIL for all of it."""
    connection = sqlite3.connect(database)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()
