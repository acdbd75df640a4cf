"""Answers the shared middleware gives when a handler fails: the request id always, 503
with Retry-After when the database cannot answer, a bare 500 for anything else."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.exc import OperationalError

from dls.db.unavailable import DatabaseTimeout
from dls.middleware import LISTENER, REQUEST_ID_HEADER, RETRY_AFTER_S, request_context

FAILURES: dict[str, BaseException] = {
    "read-timeout": DatabaseTimeout("a point read waited 10 s"),
    "other-timeout": TimeoutError(),
    "sqlite-locked": OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked")),
    "postgres-gone": asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    "postgres-shutdown": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "bug": KeyError("secret-looking detail"),
}


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    async def fail(request: web.Request) -> web.Response:
        raise FAILURES[request.match_info["name"]]

    app = web.Application(middlewares=[request_context])
    app[LISTENER] = "device"
    app.router.add_get("/fail/{name}", fail)
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    "name", ["read-timeout", "sqlite-locked", "postgres-gone", "postgres-shutdown"]
)
async def test_a_database_that_cannot_answer_is_a_503_to_retry(
    client: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dls.http")
    response = await client.get(f"/fail/{name}")
    assert response.status == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    request_id = response.headers[REQUEST_ID_HEADER]
    assert request_id in await response.text()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("database unavailable: ")


@pytest.mark.parametrize("name", ["bug", "other-timeout"])
async def test_anything_else_is_a_bare_500_with_its_traceback_logged(
    client: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dls.http")
    response = await client.get(f"/fail/{name}")
    assert response.status == 500
    body = await response.text()
    assert "secret-looking" not in body
    assert response.headers[REQUEST_ID_HEADER] in body
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
