"""PostgreSQL point reads on asyncpg directly, with statements SQLAlchemy compiled once.

Through SQLAlchemy's async engine a point read cost about 250 us of CPU here (an
``AsyncConnection`` and pool checkout, the execution context, result metadata, the
greenlet hand-over), five times what asyncpg itself needs for the same prepared
statement. As on SQLite (``dls.db.reads``), the statement is compiled once by
SQLAlchemy (``Prepared``: its SQL with the dialect's casts, bind and result processors)
and run on the driver: here one of a few asyncpg connections of its own (see
``AsyncpgReads``), in autocommit, with the same server settings as every other
connection (``jit=off``). asyncpg prepares and caches each statement per connection.

The rows match what SQLAlchemy returns: JSON columns come back decoded (a codec per
connection, as SQLAlchemy's asyncpg dialect installs one), enums and time stamps through
the columns' own result processors. A read that finds its connection dead (the database
restarted) renews the connections and is retried once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import URL, Dialect, Executable

from dls.db.engine import POSTGRESQL_CONNECT_ARGS
from dls.db.prepared import PreparedStatements
from dls.db.unavailable import DatabaseTimeout

__all__ = ["NAME", "AsyncpgReads"]

NAME = "dls point reads"  # application_name: how pg_stat_activity shows these connections
CLOSE_TIMEOUT_S = 5.0
# A point read takes a millisecond; one that waits this long is stuck behind a lock (a
# migration's ALTER TABLE, a VACUUM FULL) or an overloaded server. It fails instead of
# holding one of the few connections, and the polls queued behind it, indefinitely.
READ_TIMEOUT_S = 10.0

# What a connection the database dropped (restart, administrator) fails with: the FATAL
# message it was sent, the closed socket, or asyncpg's state machine caught mid-way.
_DROPPED = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)


class AsyncpgReads:
    """Point reads on at most ``size`` connections of their own, opened as reads need
    them and then kept.

    Not asyncpg's ``Pool``: its acquire and release cost ~26 us of CPU per read here
    (the statement itself ~33 us), and by default it sends four reset statements to the
    server on every release. These connections run autocommit SELECTs and nothing else,
    so a list of idle ones is all the pooling they need; the caller bounds concurrency
    to ``size`` (``PointReads``'s gate), so a read finds an idle connection or opens one.
    A read that fails or is cancelled closes its connection instead of handing it back,
    so a connection caught mid-statement is never reused.
    """

    def __init__(self, url: URL, dialect: Dialect, size: int) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._prepared = PreparedStatements(dialect)
        self._idle: list[asyncpg.Connection] = []
        self._open: set[asyncpg.Connection] = set()
        self._closed = False

    async def rows(self, statement: Executable, parameters: Mapping[str, Any]) -> list[Any]:
        """The rows as named tuples."""
        prepared = self._prepared[statement]
        values = prepared.parameters(parameters)
        for attempt in (1, 2):
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                records = await connection.fetch(prepared.sql, *values)
            except _DROPPED:
                self._discard(connection)
                if attempt == 2:
                    raise
                # If the database dropped one connection it dropped them all: replace
                # every idle one, so the second attempt does not meet another dead one.
                while self._idle:
                    self._discard(self._idle.pop())
                continue
            except TimeoutError as exc:  # asyncpg's command timeout
                self._discard(connection)
                raise DatabaseTimeout(f"a point read waited {READ_TIMEOUT_S:g} s") from exc
            except BaseException:
                self._discard(connection)
                raise
            self._idle.append(connection)
            return prepared.rows([tuple(record) for record in records])
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True  # a read still under way does not open another
        connections, self._open = self._open, set()
        self._idle.clear()
        await asyncio.gather(
            *(connection.close(timeout=CLOSE_TIMEOUT_S) for connection in connections),
            return_exceptions=True,
        )

    async def _connect(self) -> asyncpg.Connection:
        if self._closed:
            raise asyncpg.exceptions.InterfaceError("the point reads are closed")
        if len(self._open) >= self._size:
            raise RuntimeError(f"more than {self._size} concurrent point reads")
        settings = {**POSTGRESQL_CONNECT_ARGS["server_settings"], "application_name": NAME}
        try:
            connection = await asyncpg.connect(
                self._dsn,
                server_settings=settings,
                timeout=READ_TIMEOUT_S,
                command_timeout=READ_TIMEOUT_S,
            )
        except TimeoutError as exc:  # a server that does not answer the connection
            raise DatabaseTimeout(f"no connection within {READ_TIMEOUT_S:g} s") from exc
        try:
            await _codecs(connection)
        except BaseException:
            connection.terminate()
            raise
        self._open.add(connection)
        return connection

    def _discard(self, connection: asyncpg.Connection) -> None:
        self._open.discard(connection)
        connection.terminate()


async def _codecs(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=_as_text, decoder=json.loads, schema="pg_catalog"
        )


def _as_text(value: Any) -> str:
    """Bound JSON arrives already serialised by the column's bind processor."""
    return value if isinstance(value, str) else json.dumps(value)
