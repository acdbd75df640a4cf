"""Failures that mean the database cannot answer now, not that a request was wrong.

A poll or an admin request that meets one is answered 503 with ``Retry-After``
(``dls.middleware``) and logged as a warning without a traceback: a restarting
PostgreSQL, a lock a migration holds longer than a point read waits
(``dls.db.asyncpg_reads.READ_TIMEOUT_S``), SQLite's write lock held past its busy
timeout, a database host whose name does not resolve. Everything else stays a bug: a 500
and a traceback.
"""

from __future__ import annotations

import socket
import sqlite3

import asyncpg
from sqlalchemy import exc

__all__ = ["DatabaseTimeout", "connection_failure", "database_unavailable", "describe"]


class DatabaseTimeout(TimeoutError):
    """A statement waited longer than dls lets it (a lock, an overloaded server)."""


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,  # lost connection; SQLite busy or locked past its timeout
    exc.InterfaceError,
    exc.TimeoutError,  # no pooled connection within the pool's timeout
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, query cancelled
    ConnectionError,  # refused, reset
    # The database's host name does not resolve (DNS down, a typo in the URL): neither
    # asyncpg nor SQLAlchemy wraps it. dls resolves no other name while it answers.
    socket.gaierror,
    DatabaseTimeout,  # a point read's command timeout
)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is one of the above, and not a bug SQLite reports the same way:
    every SQLite error is an OperationalError, a write in a read-only transaction
    (``dls.db.engine.read_only``) included."""
    if not isinstance(error, _UNAVAILABLE):
        return False
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlite_errorcode", None) != sqlite3.SQLITE_READONLY


def describe(error: BaseException) -> str:
    """``error`` for the one log line a database failure gets: its type and the start of
    its message (a driver's message can run to pages)."""
    return f"{type(error).__name__}: {str(error)[:200]}"


def connection_failure(error: BaseException) -> str | None:
    """Why no connection to the database could be made, if that is what ``error`` says:
    nothing listening, a host name that does not resolve, a database or role that does
    not exist, a file that cannot be opened. None for anything else. SQLAlchemy wraps
    the driver's errors at connect time without a statement; asyncpg's socket errors
    come through unwrapped."""
    if isinstance(error, exc.DBAPIError) and error.statement is None:
        return str(error.orig if error.orig is not None else error)
    if isinstance(error, DatabaseTimeout):  # connected, then a statement waited too long
        return None
    if isinstance(error, ConnectionError | socket.gaierror | TimeoutError):
        return str(error) or type(error).__name__
    return None
