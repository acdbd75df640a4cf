"""Log a repeated problem once at warning, then at debug, in bounded memory.

Anyone can send the device listener garbage, and one misconfigured tenant makes every one
of its phones fail the same way: a flood of the same problem must not become a flood of
identical log lines, and a flood of *different* ones must not grow a table without
bound. A reason is logged at warning when first seen and again once REPEAT_AFTER_S has
passed (a problem that comes back an hour after it was fixed is news), repeats in between
at debug; the table of reasons is cleared when it reaches its cap, so a new wave of the
same reasons is reported again (as python-zeroconf's QuietLogger does).
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["MAX_REASONS", "REPEAT_AFTER_S", "QuietLog"]

MAX_REASONS = 512  # distinct reasons remembered; reasons are short fixed texts
REPEAT_AFTER_S = 600.0


class QuietLog:
    __slots__ = ("_logger", "_seen")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: dict[str, float] = {}  # reason -> when it was last logged at warning

    def warning(self, reason: str, /, **fields: Any) -> None:
        """Log ``reason`` (a fixed text, never raw input) with ``fields``."""
        now = time.monotonic()
        last = self._seen.get(reason)
        loud = last is None or now - last >= REPEAT_AFTER_S
        if loud:
            if last is None and len(self._seen) >= MAX_REASONS:
                self._seen.clear()
            self._seen[reason] = now
        level = logging.WARNING if loud else logging.DEBUG
        if self._logger.isEnabledFor(level):
            self._logger.log(level, reason, extra={"fields": fields})
