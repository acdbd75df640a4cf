"""Async engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dls.config import ConfigError, make_directory

__all__ = [
    "POOL_SIZE",
    "WRITER",
    "create_engine",
    "is_sqlite",
    "ping",
    "read_only",
    "session_factory",
]

SQLITE_BEGIN = "dls_sqlite_begin"
POOL_SIZE = 20  # connections per worker process (other databases than SQLite)
# PostgreSQL's JIT compiles a query whose estimated cost passes jit_above_cost: the device
# path's facts query at 100,000 devices (outer joins, estimates before ANALYZE) took
# 160 ms of JIT for 0.2 ms of work. Short indexed queries never repay it; JIT is off.
POSTGRESQL_CONNECT_ARGS = {"server_settings": {"jit": "off"}}
# Execution options for a session that will write: on SQLite its BEGIN takes the write
# lock up front; other databases ignore the option.
WRITER = {SQLITE_BEGIN: "IMMEDIATE"}


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # Errors are logged without their statements' values: those are ciphertexts, keyed
    # hashes and a phone's inventory, nothing a log needs.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _check_sqlite_file(Path(parsed.database))
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # A fixed pool: connections beyond a pool_size that are opened under load and closed
    # on return (max_overflow) made PostgreSQL fork a backend per request. Callers wait
    # for a free connection instead; each worker holds POOL_SIZE of them.
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args=POSTGRESQL_CONNECT_ARGS,
        **kwargs,
    )


def _check_sqlite_file(path: Path) -> None:
    """The file's directory made and the file opened once, before aiosqlite's thread
    tries: a path that cannot be opened (a directory, no permission) is a setting to fix,
    and aiosqlite's thread, failing to connect, could outlive the event loop it reports
    to and end in a traceback of its own."""
    make_directory(path.parent, "database_url")
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as exc:
        raise ConfigError(f"database_url: cannot open {path}: {exc}") from None


def _sqlite_begin(connection: Any) -> None:
    # The sqlite3 module's own transaction handling defers BEGIN and breaks SAVEPOINT;
    # with it switched off (isolation_level=None below) SQLAlchemy's BEGIN is the real one.
    # A transaction that reads, then writes, fails at once with "database is locked" when
    # another connection wrote in between; transactions that will write ask for
    # IMMEDIATE (see WRITER), so they wait for the lock instead. Reads stay deferred and
    # never block.
    mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    # WAL lets readers (device polls) run while a writer commits; foreign keys are off in
    # SQLite unless asked for on every connection; busy_timeout waits instead of failing
    # when another worker process holds the write lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextlib.asynccontextmanager
async def read_only(session: AsyncSession) -> AsyncIterator[None]:
    """The session's transaction, begun deferred, refuses writes: a read never takes
    SQLite's write lock, and code that writes where it promised to read fails at once
    (and in every test) rather than when another writer is busy. SQLite: the connection's
    ``query_only`` flag, cleared again before it goes back to the pool (a connection that
    cannot clear it is discarded); PostgreSQL: ``SET TRANSACTION READ ONLY``."""
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield
        return
    await connection.exec_driver_sql("PRAGMA query_only=ON")
    try:
        yield
        await session.flush()  # what the ORM holds would be written at commit, unguarded
    finally:
        try:
            await connection.exec_driver_sql("PRAGMA query_only=OFF")
        except DBAPIError:
            await connection.invalidate()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
