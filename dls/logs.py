"""Structured log lines carrying the request id, with secrets masked before formatting.

Call sites pass fields as ``extra={"fields": {...}}``. Any field whose name looks like a
secret is replaced by ``***`` here, so a careless call site cannot leak a password; values
are never logged from request bodies or headers wholesale.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from typing import Any

from dls.config import LogFormat

__all__ = ["REQUEST_ID", "configure", "mask_fields"]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|authorization|cookie|private|(^|_)(pin|key)($|_)",
    re.IGNORECASE,
)
MASK = "***"


def mask_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of every secret-looking key, at any depth."""
    masked: dict[str, Any] = {}
    for key, value in fields.items():
        if _SECRET_NAME.search(key):
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


class _Formatter(logging.Formatter):
    """Time stamps to the second, formatted once per second: the access log writes a
    line per request, and strftime per line showed in profiles of the device path."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record, _TIME_FORMAT)
        return self._stamp


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class _TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} "
            f"{record.name} [{record.request_id}] {record.getMessage()}"  # type: ignore[attr-defined]
        )
        fields = record.fields  # type: ignore[attr-defined]
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": record.request_id,  # type: ignore[attr-defined]
            "message": record.getMessage(),
            **record.fields,  # type: ignore[attr-defined]
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def configure(log_format: LogFormat, level: str) -> None:
    # Per record, logging otherwise looks up the calling frame, thread and process names
    # our lines never show (the Logging HOWTO's "Optimization" section names these).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_JsonFormatter() if log_format is LogFormat.JSON else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access logger is replaced by dls.http's; keep its error logger.
    logging.getLogger("aiohttp.access").propagate = False
