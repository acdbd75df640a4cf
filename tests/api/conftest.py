"""In-process admin application on a migrated database, with the world of tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.app import build_admin_app
from dls.config import Settings
from dls.services import Services
from tests.api.world import World, build_world
from tests.conftest import in_process_services


@pytest.fixture
async def services(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    settings = make_settings()
    services = in_process_services(settings, engine)
    yield services
    await services.reads.dispose()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_admin_app(services))) as test_client:
        yield test_client


@pytest.fixture
async def world(services: Services) -> World:
    async with services.sessions() as session, session.begin():
        return await build_world(session)
