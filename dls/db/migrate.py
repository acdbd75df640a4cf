"""Schema changes go through Alembic only; this runs them from code, sync or async."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.config import ConfigError
from dls.db.engine import WRITER

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x646C_735F_6D69_6772  # PostgreSQL advisory lock key: "dls_migr"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """One migrator at a time. Instances started together on one database (or ``dls db
    upgrade`` beside a starting server) each ran the same migrations: on PostgreSQL the
    second failed on a duplicate table type, on SQLite on "database is locked". The
    others now wait for the first and find the schema current. Raises ConfigError when
    the schema is at a revision this dls does not know."""
    async with engine.connect() as connection:
        await connection.execution_options(**WRITER)  # SQLite: the write lock at BEGIN
        async with connection.begin():
            if connection.dialect.name == "postgresql":
                # Released with the transaction, whatever ends it.
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                await connection.execute(lock, {"key": MIGRATION_LOCK})
            await connection.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    current = MigrationContext.configure(connection).get_current_revision()
    scripts = ScriptDirectory.from_config(alembic_config())
    if current is not None and not _known(scripts, current):
        # Upgraded by a newer dls (an upgrade rolled back, or two versions sharing one
        # database): Alembic would stop in "Can't locate revision", a traceback.
        raise ConfigError(
            f"the database schema is at revision {current}, which this dls does not know "
            f"(its newest is {scripts.get_current_head()}): a newer dls upgraded it; run "
            "that version, or restore the backup taken before the upgrade"
        )
    command.upgrade(alembic_config(connection), revision)


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
