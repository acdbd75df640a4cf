"""Servers and the commands that must not run beside one (``dls.db.serving``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.config import ConfigError, Settings
from dls.db.serving import (
    LOCK_FILE_SUFFIX,
    SERVING_LOCK,
    CommandRunning,
    ServersRunning,
    alone,
    serving,
)
from dls.rotation import rotate_key_file
from dls.secretbox import load_secret_box

pytestmark = pytest.mark.db


async def test_servers_serve_side_by_side(database_url: str) -> None:
    async with serving(database_url), serving(database_url):
        pass


async def test_a_command_refuses_while_a_server_serves(
    database_url: str, engine: AsyncEngine
) -> None:
    async with serving(database_url):
        with pytest.raises(ServersRunning, match="stop every one of them first"):
            async with alone(engine):
                pytest.fail("ran beside a server")
    async with alone(engine):  # the server stopped
        pass


async def test_a_server_refuses_to_start_while_a_command_runs(
    database_url: str, engine: AsyncEngine
) -> None:
    async with alone(engine):
        with pytest.raises(CommandRunning, match="start the server again once it has finished"):
            async with serving(database_url):
                pytest.fail("started beside the command")
        with pytest.raises(ServersRunning):  # and a second command does not run either
            async with alone(engine):
                pytest.fail("two commands at once")
    async with serving(database_url):  # the command finished
        pass


async def test_a_rotation_beside_a_server_changes_nothing(
    database_url: str, engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> None:
    """The server would have gone on with the old key, unable to open what the rotation
    wrote and writing what its admins set under a key the next start no longer has."""
    settings = make_settings()
    key = load_secret_box(settings).key_id
    before = sorted(path.name for path in settings.certs_dir.iterdir())
    async with serving(database_url):
        with pytest.raises(ServersRunning):
            await rotate_key_file(engine, settings.certs_dir)
    assert sorted(path.name for path in settings.certs_dir.iterdir()) == before
    assert load_secret_box(settings).key_id == key
    old, new, _ = await rotate_key_file(engine, settings.certs_dir)
    assert old == key != new == load_secret_box(settings).key_id


async def test_a_server_whose_lock_connection_the_database_ended_stops_cleanly(
    database_url: str, engine: AsyncEngine
) -> None:
    """A PostgreSQL restart ends the lock's connection: the server's stop must not fail
    on the unlock (the lock went with the connection, as the README says)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's advisory lock")
    terminate = text(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
        "AND classid = :high AND objid = :low"
    )
    async with serving(database_url):
        async with engine.connect() as connection:
            ended = await connection.scalar(
                terminate, {"high": SERVING_LOCK >> 32, "low": SERVING_LOCK & 0xFFFF_FFFF}
            )
        assert ended
        await asyncio.sleep(0.1)
    async with alone(engine):
        pass


async def test_a_lock_file_that_cannot_be_opened_is_named(
    database_url: str, engine: AsyncEngine
) -> None:
    """One line with the path, from the server and from the command, not a traceback."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's lock file")
    path = f"{make_url(database_url).database}{LOCK_FILE_SUFFIX}"
    os.mkdir(path)
    with pytest.raises(ConfigError, match=f"^{path}: Is a directory$"):
        async with serving(database_url):
            pytest.fail("served without the lock")
    with pytest.raises(ConfigError, match=f"^{path}: Is a directory$"):
        async with alone(engine):
            pytest.fail("ran without the lock")
