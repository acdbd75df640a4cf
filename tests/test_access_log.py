"""The access log's buffer: same lines as ``logging`` would write, whole lines per write."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from dls import access_log
from dls.access_log import AccessLines
from dls.config import LogFormat
from dls.logs import REQUEST_ID, Access, configure, output

FIELDS = Access("device", "192.0.2.7", 0.42, 1845, "Yealink SIP-T46U 108.86.0.90")


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


pytestmark = pytest.mark.usefixtures("restore_root_logger")


def _lines(log_format: LogFormat) -> tuple[AccessLines, _Writes]:
    configure(log_format, "INFO")
    out = output()
    assert out is not None
    stream = _Writes()
    return AccessLines(out.__class__(out.formatter, stream)), stream


# Values the formats treat apart: quoted or not, escaped, absent.
ODD_FIELDS = [
    FIELDS,
    FIELDS._replace(remote=None, bytes=None),
    FIELDS._replace(ua="-"),
    FIELDS._replace(ua='Phone "x" \\ 電話 \\udcff'),
    FIELDS._replace(remote="2001:db8::7", ms=1234.5),
]


@pytest.mark.parametrize("fields", ODD_FIELDS)
@pytest.mark.parametrize("log_format", list(LogFormat))
async def test_a_line_is_what_logging_writes_and_waits_for_the_flush(
    log_format: LogFormat, fields: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    lines, stream = _lines(log_format)
    token = REQUEST_ID.set("req-7")
    try:
        lines.add(fields, "GET /prov/805ec0000001.cfg 200")
        logging.getLogger("dls.access").info(
            "GET /prov/805ec0000001.cfg 200", extra={"fields": fields._asdict()}
        )
    finally:
        REQUEST_ID.reset(token)
    assert stream.writes == []  # buffered
    lines.flush()
    assert stream.getvalue() == capsys.readouterr().err
    if log_format is LogFormat.JSON:
        entry = json.loads(stream.getvalue())
        assert entry["request_id"] == "req-7" and entry["ua"] == fields.ua


async def test_the_buffer_is_written_a_second_later_without_a_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(access_log, "FLUSH_AFTER_S", 0.05)
    lines, stream = _lines(LogFormat.TEXT)
    lines.add(FIELDS, "GET /a 200")
    lines.add(FIELDS, "GET /b 200")
    await asyncio.sleep(0.2)
    assert len(stream.writes) == 1 and stream.getvalue().count("\n") == 2


async def test_writes_hold_whole_lines_and_at_most_a_pipe_buffer() -> None:
    lines, stream = _lines(LogFormat.TEXT)
    for number in range(200):
        lines.add(FIELDS, f"GET /prov/{number:012x}.cfg 200")
    lines.flush()
    assert len(stream.writes) > 1
    assert all(len(w.encode()) <= access_log.WRITE_MAX and w.endswith("\n") for w in stream.writes)
    assert stream.getvalue().count("\n") == 200


async def test_a_full_buffer_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_log, "BUFFER_MAX", 1000)
    lines, stream = _lines(LogFormat.TEXT)
    added = 0
    while not stream.writes:
        lines.add(FIELDS, "GET /prov/805ec0000001.cfg 200")
        added += 1
    line = len(stream.writes[0].splitlines()[0]) + 1
    assert stream.getvalue().count("\n") == added == -(-1000 // line)


async def test_lines_with_other_letters_stay_within_a_pipe_buffer() -> None:
    lines, stream = _lines(LogFormat.TEXT)
    for _ in range(100):
        lines.add(FIELDS._replace(ua="Téléphone 電話 " * 4), "GET /prov/x.cfg 200")
    lines.flush()
    assert all(len(w.encode()) <= access_log.WRITE_MAX for w in stream.writes)
