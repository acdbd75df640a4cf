"""Whether dls servers serve from a database: held by each serving process for its life,
and taken exclusively by the commands that must not run beside one.

A server keeps the secret key in memory. ``dls secrets rotate-key`` while one ran left
it holding a key that opens none of the secrets just re-encrypted (every phone's Digest
check and every rendering with a password failed until a restart), and whatever its
admins set afterwards was written under the old key, which the next start no longer
has: lost. "Stop the servers first" was a line of help text; the commands now refuse.

- PostgreSQL: each serving process holds a shared advisory lock on a connection of its
  own (outside the request pool, in autocommit, so it is no transaction left open); a
  command takes the same lock exclusively. Neither waits: a server starting while a
  command runs stops with a message, as the command does while servers run. A database
  restart ends the servers' sessions and with them their locks, until they restart.
- SQLite: the same with ``flock`` on ``<database file>.serving``; SQLite needs every
  process on one host anyway. An in-memory database has no file and no other process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from dls.config import ConfigError
from dls.db.engine import POSTGRESQL_CONNECT_ARGS

__all__ = ["SERVING_LOCK", "CommandRunning", "ServersRunning", "alone", "serving"]

SERVING_LOCK = 0x646C_735F_7365_7276  # PostgreSQL advisory lock key: "dls_serv"
LOCK_FILE_SUFFIX = ".serving"


class ServersRunning(ConfigError):
    """A command that must run alone found servers serving from the database."""


class CommandRunning(ConfigError):
    """A server found a command running alone on the database."""


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[None]:
    """Held while this process serves from the database at ``url``; any number of
    servers hold it at once. Raises CommandRunning while a command runs alone."""
    refused = CommandRunning(
        "a command that must run alone (dls secrets rotate-key or forget-lost) is changing "
        "the database's secrets; start the server again once it has finished"
    )
    if make_url(url).get_backend_name() == "sqlite":
        async with _lock(url, None, shared=True, refused=refused):
            yield
        return
    # Its own connection: a pooled one would be one fewer for requests, and dispose()
    # at shutdown would close it while the lock should still be held.
    engine = create_async_engine(url, poolclass=NullPool, connect_args=POSTGRESQL_CONNECT_ARGS)
    try:
        async with _lock(url, engine, shared=True, refused=refused):
            yield
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def alone(engine: AsyncEngine) -> AsyncIterator[None]:
    """While the body runs, no server serves from ``engine``'s database and none starts.
    Raises ServersRunning when one serves."""
    refused = ServersRunning(
        "dls servers are serving from this database; stop every one of them first (they "
        "keep the secret key in memory, and would go on with the old one)"
    )
    url = engine.url.render_as_string(hide_password=False)
    async with _lock(url, engine, shared=False, refused=refused):
        yield


@contextlib.asynccontextmanager
async def _lock(
    url: str, engine: AsyncEngine | None, *, shared: bool, refused: ConfigError
) -> AsyncIterator[None]:
    """The lock, shared or exclusive, without waiting; ``refused`` when it is taken."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            yield  # no file, and no other process
            return
        path = Path(parsed.database + LOCK_FILE_SUFFIX)
        with _flock(path, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, refused):
            yield
        return
    assert engine is not None
    mode = "_shared" if shared else ""  # one of two fixed suffixes, never input
    async with engine.connect() as connection:
        # Not a transaction left open for the server's life (it would hold back VACUUM).
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        if not await connection.scalar(text(f"SELECT pg_try_advisory_lock{mode}(:key)"), _KEY):
            raise refused
        try:
            yield
        finally:
            # A connection the database ended (a restart) took its lock with it.
            with contextlib.suppress(SQLAlchemyError, OSError):
                await connection.execute(text(f"SELECT pg_advisory_unlock{mode}(:key)"), _KEY)


_KEY = {"key": SERVING_LOCK}


@contextlib.contextmanager
def _flock(path: Path, operation: int, refused: ConfigError) -> Iterator[None]:
    # Read-only and readable by all: flock needs no more, and a file an operator's
    # command made as root first still opens for the server's own user. It stays empty.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refused from None
        yield  # the lock goes with the descriptor
    finally:
        os.close(descriptor)
