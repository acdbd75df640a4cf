"""Time zones as phones understand them: a standard offset and a yearly DST rule.

Phones (Gigaset aside) do not know IANA names. They take an offset and, at best, a rule
like "last Sunday of March, 02:00". tzdata already carries exactly that: every TZif file
ends with a POSIX TZ string giving the zone's rule for all years after its last listed
transition (RFC 8536 section 3.3). Reading it, rather than computing this year's two
transition dates, keeps a rendered config right next year too.

This is the mapping source for every vendor converter in ``converters.py``: offsets and
rules come from the system's (or the ``tzdata`` package's) TZif data, never from a table
of ours.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["Transition", "ZoneRule", "ZoneRuleError", "parse_posix_tz", "zone_rule"]

_HOUR = 3600


class ZoneRuleError(ValueError):
    """The zone's rule cannot be read or is not a POSIX TZ string we understand."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A yearly DST change in POSIX ``Mm.w.d/time`` form.

    ``week`` is 1-5 where 5 means the last such weekday of the month; ``weekday`` is
    0 (Sunday) to 6; ``seconds`` is local wall-clock time and may be negative or past
    24 h (RFC 8536 section 3.3.1 allows -167..167 hours).
    """

    month: int
    week: int
    weekday: int
    seconds: int


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """A zone's current rule. Offsets are seconds east of UTC (UTC+1 is 3600)."""

    name: str
    std_abbreviation: str
    std_offset: int
    dst_abbreviation: str | None = None
    dst_offset: int | None = None
    start: Transition | None = None  # None also when the rule uses Julian days (Jn, n)
    end: Transition | None = None

    @property
    def observes_dst(self) -> bool:
        return self.dst_abbreviation is not None

    @property
    def dst_save(self) -> int | None:
        """Seconds DST adds to standard time."""
        if self.dst_offset is None:
            return None
        return self.dst_offset - self.std_offset

    def posix(self) -> str:
        """The rule as an explicit POSIX TZ string, every field spelled out.

        ``CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00`` rather than tzdata's compact
        ``CET-1CEST,M3.5.0,M10.5.0/3``: the explicit form is what Grandstream's own
        examples use, and both mean the same to any POSIX reader.
        """
        text = f"{_quote(self.std_abbreviation)}{_posix_offset(self.std_offset)}"
        if self.dst_abbreviation is None or self.dst_offset is None:
            return text
        text += f"{_quote(self.dst_abbreviation)}{_posix_offset(self.dst_offset)}"
        if self.start is not None and self.end is not None:
            text += f",{_posix_transition(self.start)},{_posix_transition(self.end)}"
        return text


@lru_cache(maxsize=1024)
def zone_rule(name: str) -> ZoneRule:
    """The current rule of IANA zone ``name``, from its TZif footer.

    Raises ``ZoneRuleError`` for an unknown zone or a TZif file without footer (version 1).
    """
    try:
        zoneinfo.ZoneInfo(name)  # validates the name, rejects path tricks
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ZoneRuleError(f"unknown time zone {name!r}") from None
    data = _tzif_bytes(name)
    if not data.startswith(b"TZif") or data[4:5] in (b"\x00", b""):
        raise ZoneRuleError(f"{name}: TZif data without a POSIX footer")
    footer = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        text = footer.decode("ascii")
    except UnicodeDecodeError:
        raise ZoneRuleError(f"{name}: footer is not ASCII") from None
    if not text:
        raise ZoneRuleError(f"{name}: empty POSIX footer")
    return parse_posix_tz(name, text)


def _tzif_bytes(name: str) -> bytes:
    for directory in zoneinfo.TZPATH:
        candidate = Path(directory, *name.split("/"))
        if candidate.is_file():
            return candidate.read_bytes()
    try:  # the tzdata package, which zoneinfo itself falls back to
        return resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        raise ZoneRuleError(f"{name}: no TZif file found") from None


_NAME = r"(?:<[+\-0-9A-Za-z]+>|[A-Za-z]{3,})"
_OFFSET = r"[+-]?[0-9]{1,3}(?::[0-9]{2}){0,2}"
_DATE = r"(?:M[0-9]{1,2}\.[1-5]\.[0-6]|J[0-9]{1,3}|[0-9]{1,3})"
_POSIX = re.compile(
    rf"^(?P<std>{_NAME})(?P<std_offset>{_OFFSET})"
    rf"(?:(?P<dst>{_NAME})(?P<dst_offset>{_OFFSET})?"
    rf"(?:,(?P<start>{_DATE})(?:/(?P<start_time>{_OFFSET}))?"
    rf",(?P<end>{_DATE})(?:/(?P<end_time>{_OFFSET}))?)?)?$"
)


def parse_posix_tz(name: str, text: str) -> ZoneRule:
    """Parse a POSIX TZ string (RFC 8536 flavour) into a ``ZoneRule`` named ``name``."""
    match = _POSIX.match(text)
    if match is None:
        raise ZoneRuleError(f"{name}: cannot parse POSIX TZ string {text!r}")
    std_offset = -_seconds(match["std_offset"])  # POSIX counts west of UTC as positive
    if match["dst"] is None:
        return ZoneRule(name, _unquote(match["std"]), std_offset)
    dst_offset = -_seconds(match["dst_offset"]) if match["dst_offset"] else std_offset + _HOUR
    start = _transition(match["start"], match["start_time"])
    end = _transition(match["end"], match["end_time"])
    if start is None or end is None:
        start = end = None
    return ZoneRule(
        name, _unquote(match["std"]), std_offset, _unquote(match["dst"]), dst_offset, start, end
    )


def _transition(date: str | None, time: str | None) -> Transition | None:
    if date is None or not date.startswith("M"):
        return None  # Julian-day rules (Jn, n): no phone we serve can express them
    month, week, weekday = (int(part) for part in date[1:].split("."))
    seconds = _seconds(time) if time else 2 * _HOUR  # POSIX default: 02:00
    return Transition(month, week, weekday, seconds)


def _seconds(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(part) for part in text.lstrip("+-").split(":")]
    hours, minutes, seconds = (*parts, 0, 0)[:3]
    return sign * (hours * _HOUR + minutes * 60 + seconds)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("<") else name


def _quote(name: str) -> str:
    return name if name.isalpha() else f"<{name}>"


def _posix_offset(seconds_east: int) -> str:
    value = -seconds_east
    sign = "-" if value < 0 else ""
    hours, rest = divmod(abs(value), _HOUR)
    minutes, seconds = divmod(rest, 60)
    if seconds:
        return f"{sign}{hours}:{minutes:02d}:{seconds:02d}"
    if minutes:
        return f"{sign}{hours}:{minutes:02d}"
    return f"{sign}{hours}"


def _posix_transition(transition: Transition) -> str:
    sign = "-" if transition.seconds < 0 else ""
    hours, rest = divmod(abs(transition.seconds), _HOUR)
    minutes, seconds = divmod(rest, 60)
    return (
        f"M{transition.month}.{transition.week}.{transition.weekday}"
        f"/{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    )
