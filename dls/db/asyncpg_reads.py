"""PostgreSQL point reads on asyncpg directly, with statements SQLAlchemy compiled once.

Through SQLAlchemy's async engine a point read cost about 250 us of CPU here (an
``AsyncConnection`` and pool checkout, the execution context, result metadata, the
greenlet hand-over), five times what asyncpg itself needs for the same prepared
statement. As on SQLite (``dls.db.reads``), the statement is compiled once by
SQLAlchemy (``Prepared``: its SQL with the dialect's casts, bind and result processors)
and run on the driver: here a connection of a small asyncpg pool of its own, in
autocommit, with the same server settings as every other connection (``jit=off``).
asyncpg prepares and caches each statement per connection.

The rows match what SQLAlchemy returns: JSON columns come back decoded (a codec per
connection, as SQLAlchemy's asyncpg dialect installs one), enums and time stamps through
the columns' own result processors. A read that finds its connection dead (the database
restarted) renews the pool's connections and is retried once.
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

__all__ = ["NAME", "AsyncpgReads"]

NAME = "dls point reads"  # application_name: how pg_stat_activity shows these connections

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
    def __init__(self, url: URL, dialect: Dialect, size: int) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._prepared = PreparedStatements(dialect)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def rows(self, statement: Executable, parameters: Mapping[str, Any]) -> list[Any]:
        """The rows as named tuples. Callers bound concurrency to the pool's size (the
        pool's own queue is not first come, first served)."""
        prepared = self._prepared[statement]
        values = prepared.parameters(parameters)
        pool = self._pool or await self._open()
        for attempt in (1, 2):
            try:
                async with pool.acquire() as connection:
                    records = await connection.fetch(prepared.sql, *values)
                break
            except _DROPPED:
                if attempt == 2:
                    raise
                # If the database dropped one connection it dropped them all: replace
                # every one, so the second attempt does not meet another dead one.
                await pool.expire_connections()
        return prepared.rows([tuple(record) for record in records])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _open(self) -> asyncpg.Pool:
        # Sized like the caller's gate; connections are opened as reads need them and then
        # kept (never closed for being idle), so none is opened and closed under load
        # (see dls.db.engine).
        async with self._opening:
            if self._pool is None:
                self._pool = await self._create()
        return self._pool

    async def _create(self) -> asyncpg.Pool:
        settings = {**POSTGRESQL_CONNECT_ARGS["server_settings"], "application_name": NAME}
        return await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._size,
            max_inactive_connection_lifetime=0,
            init=_codecs,
            reset=_nothing_to_reset,
            server_settings=settings,
        )


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """These connections run point SELECTs in autocommit and nothing else: no advisory
    lock, cursor, LISTEN or SET is ever left to undo. asyncpg's default reset sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release: a
    second round trip per poll, and RESET ALL walks every setting in the backend.
    (asyncpg still rolls back a transaction left open before calling this.)"""


async def _codecs(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=_as_text, decoder=json.loads, schema="pg_catalog"
        )


def _as_text(value: Any) -> str:
    """Bound JSON arrives already serialised by the column's bind processor."""
    return value if isinstance(value, str) else json.dumps(value)
