"""Log a repeated problem once at warning, then at debug, in bounded memory.

Anyone can send the device listener garbage; a flood of the same malformed body must not
become a flood of identical log lines, and a flood of *different* ones must not grow a
set without bound. The first occurrence of a reason is logged at warning, repeats at
debug; the set of seen reasons is cleared when it reaches its cap, so a new wave of the
same reasons is reported again (as python-zeroconf's QuietLogger does).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["MAX_REASONS", "QuietLog"]

MAX_REASONS = 512  # distinct reasons remembered; reasons are short fixed texts


class QuietLog:
    __slots__ = ("_logger", "_seen")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: set[str] = set()

    def warning(self, reason: str, /, **fields: Any) -> None:
        """Log ``reason`` (a fixed text, never raw input) with ``fields``."""
        first = reason not in self._seen
        if first:
            if len(self._seen) >= MAX_REASONS:
                self._seen.clear()
            self._seen.add(reason)
        level = logging.WARNING if first else logging.DEBUG
        if self._logger.isEnabledFor(level):
            self._logger.log(level, reason, extra={"fields": fields})
