"""Middlewares shared by every listener: request id, metrics, and clean error answers."""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dls.db.unavailable import database_unavailable, describe
from dls.logs import REQUEST_ID
from dls.metrics import REQUEST_SECONDS, REQUESTS

__all__ = ["LISTENER", "loggable_path", "request_context"]

log = logging.getLogger("dls.http")

LISTENER = web.AppKey("listener", str)
REQUEST_ID_HEADER = "X-Request-ID"
# A caller-supplied id is kept only if it is short and plain, so it cannot forge log lines.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Firmware download URLs carry a signed token (dls.firmware.tokens): a credential, not logged.
_SIGNED_PATH = re.compile(r"^(/fw/)[^/]+/")
RETRY_AFTER_S = 30  # when the database cannot answer: long enough for a restart

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if _CLIENT_ID.match(supplied) else _new_request_id()
    REQUEST_ID.set(request_id)
    listener = request.app[LISTENER]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    except Exception as exc:
        if not database_unavailable(exc):
            # Anything unexpected is a bug: log it once with its traceback, answer a plain
            # 500 that carries the request id and nothing of the exception.
            log.exception("unhandled error", extra={"fields": {"path": loggable_path(request)}})
            raise web.HTTPInternalServerError(
                text="internal error; request id " + request_id,
                headers={REQUEST_ID_HEADER: request_id},
            ) from None
        # Not a bug in dls: the database is restarting, locked or overloaded. Clients
        # come back later; the log says what, once, without a traceback.
        status = 503
        log.warning(
            "database unavailable: %s",
            describe(exc),
            extra={"fields": {"path": loggable_path(request)}},
        )
        raise web.HTTPServiceUnavailable(
            text="database unavailable; try again later; request id " + request_id,
            headers={REQUEST_ID_HEADER: request_id, "Retry-After": str(RETRY_AFTER_S)},
        ) from None
    finally:
        _counter(listener, _method(request.method), status).inc()
        _timer(listener).observe(time.perf_counter() - started)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def loggable_path(request: web.BaseRequest) -> str:
    """The path as the client sent it (percent-encoded, so it cannot break a log line),
    without the query string or a firmware URL's signed token."""
    path = request.raw_path.partition("?")[0]
    return _SIGNED_PATH.sub(r"\1…/", path) if path.startswith("/fw/") else path


# Unique per process start (random prefix) and per request (counter): as good as random
# bytes for correlating log lines, without a system call per request.
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(method: str) -> str:
    """Any other method is one label value, so clients cannot grow the metric's series."""
    return method if method in _METHODS else "OTHER"


@functools.lru_cache(maxsize=1024)
def _counter(listener: str, method: str, status: int) -> Any:
    return REQUESTS.labels(listener, method, str(status))


@functools.lru_cache(maxsize=16)
def _timer(listener: str) -> Any:
    return REQUEST_SECONDS.labels(listener)
