"""Answers the shared middleware gives when a handler fails: the request id always, 503
with Retry-After when the database cannot answer, a bare 500 for anything else."""

from __future__ import annotations

import logging
import socket
import sqlite3
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.exc import OperationalError

from dls.db.unavailable import DatabaseTimeout
from dls.middleware import LISTENER, REQUEST_ID_HEADER, RETRY_AFTER_S, request_context


def _sqlite_error(code: int, message: str) -> OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return OperationalError("UPDATE", None, error)


FAILURES: dict[str, BaseException] = {
    "read-timeout": DatabaseTimeout("a point read waited 10 s"),
    "other-timeout": TimeoutError(),
    "sqlite-locked": _sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"),
    # A write in a read-only transaction: a bug, though SQLite reports it the same way.
    "sqlite-read-only": _sqlite_error(
        sqlite3.SQLITE_READONLY, "attempt to write a readonly database"
    ),
    "postgres-gone": asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    "postgres-shutdown": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "postgres-host-unknown": socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
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


async def _fail(
    client: Any, caplog: pytest.LogCaptureFixture, name: str
) -> tuple[Any, str, logging.LogRecord]:
    """The answer to a request whose handler raises ``FAILURES[name]``, its body and the
    one log line it left; every answer carries its request id."""
    caplog.set_level(logging.WARNING, logger="dls.http")
    response = await client.get(f"/fail/{name}")
    body = await response.text()
    assert response.headers[REQUEST_ID_HEADER] in body
    (record,) = caplog.records
    return response, body, record


@pytest.mark.parametrize(
    "name",
    [
        "read-timeout",
        "sqlite-locked",
        "postgres-gone",
        "postgres-shutdown",
        "postgres-host-unknown",
    ],
)
async def test_a_database_that_cannot_answer_is_a_503_to_retry(
    client: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    response, _, record = await _fail(client, caplog, name)
    assert response.status == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("database unavailable: ")


@pytest.mark.parametrize("name", ["bug", "other-timeout", "sqlite-read-only"])
async def test_anything_else_is_a_bare_500_with_its_traceback_logged(
    client: Any, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    response, body, record = await _fail(client, caplog, name)
    assert response.status == 500
    assert "secret-looking" not in body
    assert record.levelno == logging.ERROR and record.exc_info is not None
