"""A repeated problem is logged once at warning, again after a while, in bounded memory."""

from __future__ import annotations

import logging

import pytest

from dls import quiet as quiet_module
from dls.quiet import MAX_REASONS, REPEAT_AFTER_S, QuietLog


def test_a_reason_warns_once_then_again_after_a_while(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(quiet_module.time, "monotonic", lambda: now[0])
    logger = logging.getLogger("test.quiet")
    caplog.set_level(logging.DEBUG, "test.quiet")
    quiet = QuietLog(logger)
    for _ in range(3):
        quiet.warning("same reason", remote="x")
    now[0] += REPEAT_AFTER_S - 1
    quiet.warning("same reason")  # within the window: still quiet
    now[0] += 1
    quiet.warning("same reason")  # the problem is still there, or back: news again
    quiet.warning("same reason")
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 3 + [logging.WARNING, logging.DEBUG]


def test_reasons_are_remembered_in_bounded_memory(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "test.quiet")
    quiet = QuietLog(logging.getLogger("test.quiet"))
    for number in range(MAX_REASONS * 2):
        quiet.warning(f"reason {number}")
    assert len(quiet._seen) <= MAX_REASONS
    assert len(caplog.records) == MAX_REASONS * 2  # each new reason is news


def test_quiet_log_fields_may_be_called_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "test.quiet.fields")
    QuietLog(logging.getLogger("test.quiet.fields")).warning("violation", reason="why")
    assert caplog.records[0].fields == {"reason": "why"}  # type: ignore[attr-defined]
