"""Structured log lines carrying the request id, with secrets masked before formatting.

Call sites pass fields as ``extra={"fields": {...}}``. Any field whose name looks like a
secret is replaced by ``***`` here, so a careless call site cannot leak a password; values
are never logged from request bodies or headers wholesale.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from dls.config import LogFormat
from dls.malformed import MALFORMED_REQUESTS

__all__ = [
    "ACCESS_LOGGER",
    "REQUEST_ID",
    "Access",
    "Entry",
    "Output",
    "configure",
    "mask_fields",
    "output",
]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|authorization|cookie|private|(^|_)(pin|key)($|_)",
    re.IGNORECASE,
)
MASK = "***"


@functools.lru_cache(maxsize=1024)
def _secret_name(key: str) -> bool:
    """Field names come from call sites, a small fixed set: decided once per name."""
    return _SECRET_NAME.search(key) is not None


def mask_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of every secret-looking key, at any depth."""
    masked: dict[str, Any] = {}
    for key, value in fields.items():
        if _secret_name(key):
            masked[key] = MASK if value not in (None, "") else value
        elif isinstance(value, dict):
            masked[key] = mask_fields(value)
        else:
            masked[key] = value
    return masked


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        fields = getattr(record, "fields", None)
        record.fields = mask_fields(fields) if isinstance(fields, dict) else {}
        return True


class Entry(NamedTuple):
    """What a line says, from a LogRecord or made directly (the access log)."""

    created: float
    level: str
    name: str
    request_id: str
    message: str
    fields: dict[str, Any]
    exception: str | None = None


ACCESS_LOGGER = "dls.access"


class Access(NamedTuple):
    """The fields of an access line, in the order it shows them."""

    listener: str
    remote: str | None
    ms: float
    bytes: int | None
    ua: str


class _Formatter(logging.Formatter):
    """Time stamps to the second, formatted once per second: the access log writes a
    line per request, and strftime per line showed in profiles of the device path."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(_TIME_FORMAT, self.converter(created))
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            Entry(
                record.created,
                record.levelname,
                record.name,
                record.request_id,  # type: ignore[attr-defined]
                record.getMessage(),
                record.fields,  # type: ignore[attr-defined]
                self.formatException(record.exc_info) if record.exc_info else None,
            )
        )

    def line(self, entry: Entry) -> str:
        """One line as this format writes it."""
        raise NotImplementedError

    def access_line(self, created: float, request_id: str, message: str, access: Access) -> str:
        """The access log's line (``dls.access_log``): what ``line`` writes for an INFO
        entry of ``dls.access`` with ``access`` as its fields, made without the Entry, the
        fields dict and the loop over them, since it is written once per request."""
        raise NotImplementedError


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _TextFormatter(_Formatter):
    def line(self, entry: Entry) -> str:
        line = (
            f"{self.stamp(entry.created)} {entry.level:<7} {entry.name} "
            f"[{entry.request_id}] {entry.message}"
        )
        if entry.fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in entry.fields.items())
        if entry.exception:
            line += "\n" + entry.exception
        return line

    def access_line(self, created: float, request_id: str, message: str, access: Access) -> str:
        # As line() writes it: listener, ms and bytes never hold a space or are empty.
        return (
            f"{self.stamp(created)} INFO    {ACCESS_LOGGER} [{request_id}] {message} "
            f"listener={access.listener} remote={_text(access.remote)} ms={access.ms} "
            f"bytes={access.bytes} ua={_text(access.ua)}"
        )


class _JsonFormatter(_Formatter):
    def line(self, entry: Entry) -> str:
        fields: dict[str, Any] = {
            "time": self.stamp(entry.created),
            "level": entry.level,
            "logger": entry.name,
            "request_id": entry.request_id,
            "message": entry.message,
            **entry.fields,
        }
        if entry.exception:
            fields["exception"] = entry.exception
        return _encode_json(fields)

    def access_line(self, created: float, request_id: str, message: str, access: Access) -> str:
        return _encode_json(
            {
                "time": self.stamp(created),
                "level": "INFO",
                "logger": ACCESS_LOGGER,
                "request_id": request_id,
                "message": message,
                "listener": access.listener,
                "remote": access.remote,
                "ms": access.ms,
                "bytes": access.bytes,
                "ua": access.ua,
            }
        )


def _text(value: Any) -> str:
    text = str(value)
    return _quote(text) if (" " in text or not text) else text


# Encoders made once: json.dumps with any option builds a new JSONEncoder per call.
_encode_json = json.JSONEncoder(default=str, ensure_ascii=False).encode
_quote = json.JSONEncoder(ensure_ascii=False).encode


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``configure`` installs, so ``output()`` can find it."""


@dataclass(frozen=True, slots=True)
class Output:
    """Where and how lines are written: for writers that build no LogRecord."""

    formatter: _Formatter
    stream: TextIO


def output() -> Output | None:
    """The configured output; None when ``configure`` has not run (library use, tests)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler) and isinstance(handler.formatter, _Formatter):
            return Output(handler.formatter, handler.stream)
    return None


def configure(log_format: LogFormat, level: str) -> None:
    # Per record, logging otherwise looks up the calling frame, thread and process names
    # our lines never show (the Logging HOWTO's "Optimization" section names these).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _Handler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_JsonFormatter() if log_format is LogFormat.JSON else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access logger is replaced by dls.http's; keep its error logger, but
    # not its traceback for every request that is not HTTP (dls.malformed).
    logging.getLogger("aiohttp.access").propagate = False
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUESTS)  # once, if called again
