"""Requests aiohttp could not parse, logged as what they are: noise from the network.

aiohttp logs each request it cannot parse (a byte a request line or header may not
hold, a line too long) at ERROR with a traceback, on ``aiohttp.server``. The device
listener faces every phone and whatever else reaches it: one scanner would bury the
errors that matter under tracebacks of its requests. ``MalformedRequests`` turns each
into a ``QuietLog`` warning per kind of fault (the parser's words, without the bytes),
repeats at debug. Anything else logged there, a failure of dls's own, passes unchanged.
The client still gets aiohttp's 400, and the access log its line.
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError

from dls.quiet import QuietLog

__all__ = ["MALFORMED_REQUESTS", "MalformedRequests"]

_NUMBERS = re.compile(r"\d+")
_QUOTED = re.compile(r"[:'\"]")


class MalformedRequests(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._quiet = QuietLog(logging.getLogger("dls.http"))

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        self._quiet.warning("malformed HTTP request: " + _fault(error), remote=remote or "-")
        return False


# The one a process installs (dls.logs.configure): logging adds a filter object once.
MALFORMED_REQUESTS = MalformedRequests()


def _fault(error: HttpProcessingError) -> str:
    """The parser's words for the fault: its message's first line up to what it quotes
    of the request (after a colon or in quotes), numbers (a line's length) left out, so
    one kind of fault stays one reason however many clients send it."""
    words = error.message.splitlines()[0] if error.message else ""
    words = _NUMBERS.sub("N", _QUOTED.split(words, maxsplit=1)[0]).strip()[:80]
    return f"{type(error).__name__} ({words})" if words else type(error).__name__
