"""Shared fixtures: settings in a temporary directory, and a migrated database.

The database is SQLite in a temporary file unless ``DLS_TEST_DATABASE_URL`` names another
(CI sets a fresh PostgreSQL database); on PostgreSQL each test starts from an empty schema.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.config import Settings, load_settings
from dls.db.engine import create_engine, session_factory
from dls.db.migrate import upgrade
from dls.devices.catalog import load_catalog
from dls.pki import ensure_pki
from dls.provisioning.ledger import Ledger
from dls.secretbox import load_secret_box
from dls.services import Services

TEST_DATABASE_URL = os.environ.get("DLS_TEST_DATABASE_URL", "")

# Property tests check that nothing hangs, not how fast a shared CI machine is: a generous
# deadline still fails a real hang, without failing a run on a loaded machine.
hypothesis_settings.register_profile("dls", deadline=2000)
hypothesis_settings.load_profile("dls")


@pytest.fixture
def restore_root_logger() -> Any:
    """For tests that call ``dls.logs.configure``: the root logger as it was, after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "certs_dir": tmp_path / "certs",
            "mdns_enabled": False,
        }
        values.update(overrides)
        return load_settings(None, **values)

    return build


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """An empty database for this test; its URL."""
    return await empty_database(tmp_path)


async def empty_database(directory: Path) -> str:
    """The URL of an empty database: SQLite in ``directory``, or the PostgreSQL test
    database with its schema dropped and created again."""
    if not TEST_DATABASE_URL:
        return f"sqlite+aiosqlite:///{directory / 'test.sqlite3'}"
    engine = create_engine(TEST_DATABASE_URL)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    return TEST_DATABASE_URL


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database."""
    engine = create_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


def in_process_services(settings: Settings, engine: AsyncEngine) -> Services:
    """The services ``dls serve`` builds, for applications run inside the test process."""
    sessions = session_factory(engine)
    return Services(
        settings,
        ensure_pki(settings),
        engine,
        sessions,
        load_secret_box(settings),
        load_catalog(),
        Ledger(sessions),
    )
