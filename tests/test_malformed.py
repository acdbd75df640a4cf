"""aiohttp's log of requests it could not parse: one quiet line per kind, not a traceback."""

from __future__ import annotations

import logging
import sys

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from dls.malformed import MalformedRequests


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("192.0.2.7",),
        exc_info,
    )


def test_a_request_that_is_not_http_is_one_warning_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dls.http")
    malformed = MalformedRequests()
    assert not malformed.filter(_record(BadHttpMessage("Invalid header value char")))
    assert not malformed.filter(_record(BadHttpMessage("Invalid header value char")))
    assert not malformed.filter(_record(LineTooLong("request line", "8190", "9000")))
    assert not malformed.filter(_record(LineTooLong("request line", "8190", "12000")))
    seen = [(r.levelname, r.getMessage(), r.fields) for r in caplog.records]  # type: ignore[attr-defined]
    remote = {"remote": "192.0.2.7"}
    too_long = "malformed HTTP request: LineTooLong (Got more than N bytes when reading)"
    assert seen == [
        ("WARNING", "malformed HTTP request: BadHttpMessage (Invalid header value char)", remote),
        ("DEBUG", "malformed HTTP request: BadHttpMessage (Invalid header value char)", remote),
        ("WARNING", too_long, remote),  # the lengths, left out, would make every one news
        ("DEBUG", too_long, remote),
    ]


def test_a_failure_of_dls_itself_keeps_its_traceback() -> None:
    assert MalformedRequests().filter(_record(KeyError("a bug")))


def test_what_the_parser_quotes_of_the_request_is_left_out() -> None:
    # One reason however many different requests: the QuietLog stays quiet.
    malformed = MalformedRequests()
    logger = logging.getLogger("dls.http")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        for method in ("GETX", "PUTZ", "H3AD"):
            malformed.filter(_record(BadHttpMessage(f"Bad method '{method}' in request")))
    finally:
        logger.removeHandler(handler)
    assert seen[0] == "malformed HTTP request: BadHttpMessage (Bad method)"
    assert len(set(seen)) == 1
