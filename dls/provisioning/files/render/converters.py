"""Converters: one canonical value to one vendor string, named by ``Converter`` in profiles.

Time conversions take their facts from tzdata (see ``timezones.py``); the vendor encodings
they produce, and where each was documented:

- ``utc-offset-hours`` ``+1``, ``+5:30``: Yealink ``local_time.time_zone``, AutoDST
  ``szTime`` "[+/-][X]:[Y]" (Yealink administrator guides).
- ``month-week-weekday-hour`` ``3/5/7/2``: Yealink ``local_time.start_time`` by week,
  "Week of Month 1~5 (5 the last), Day of Week 1=Mon..7=Sun" (Yealink guides).
- ``gmt-offset`` ``GMT+01:00`` and ``cisco-dst-rule``
  ``start=3/-1/7/2:0:0;end=10/-1/7/3:0:0;save=1:0:0``: Cisco SPA ``Time_Zone`` and
  ``Daylight_Saving_Time_Rule``, "<month>/<day>/<weekday>/HH:mm:ss, weekday 1=Mon..7=Sun,
  day -1 the last, a positive day means on or after it" (SPA administration guide, as used
  by wazo-provd-plugins ``wazo_cisco_spa``).
- ``utc-offset-seconds``, ``weekday-sun1``, ``day-on-or-after``, ``last-in-month``: Poly
  ``tcpIpApp.sntp.*`` (reference; wazo ``wazo_polycom``).
- ``utc-offset-quarter-hours``, ``weekday-sun0``, ``week-last-minus1``: Fanvil
  ``phone.date.*`` (wazo ``wazo_fanvil``, UTC+1 -> 4).
- ``posix``: Grandstream P64 (reference).
- ``zone-table``: the profile's ``[time_zones]`` table (Snom codes, Gigaset's accepted
  IANA names). A zone missing from the table takes the entry of a listed zone with the
  very same rule (Europe/Vienna -> Europe/Berlin's value): same offset, same DST dates,
  so the device's clock cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from dls.provisioning.files.render.timezones import Transition, ZoneRule, zone_rule
from dls.provisioning.files.vocabulary import Converter

__all__ = ["Unrepresentable", "convert"]

_HOUR = 3600
_DAY = 24 * _HOUR


class Unrepresentable(ValueError):
    """The vendor format cannot carry this value (e.g. a 30-minute offset in whole hours)."""


def convert(
    converter: Converter, value: object, *, time_zones: Mapping[str, str] | None = None
) -> str | None:
    """``value`` as the vendor writes it, or None when the key does not apply.

    None is "nothing to say" (a DST rule for a zone without DST, the day-of-month of a
    "last Sunday" rule); ``Unrepresentable`` is "the format cannot say this".
    Pre: the profile loader checked that ``converter`` fits the value's kind.
    """
    if converter is Converter.TEXT:
        return _text(value)
    if converter is Converter.URL_WITHOUT_SCHEME:
        return str(value).partition("://")[2] or str(value)
    if converter is Converter.URL_SCHEME:
        scheme, separator, _ = str(value).partition("://")
        return scheme.lower() if separator else None
    if converter is Converter.MINUTES_TO_SECONDS:
        return str(int(str(value)) * 60)
    if isinstance(value, ZoneRule):
        return _zone(converter, value, time_zones or {})
    if isinstance(value, Transition):
        return _transition(converter, value)
    raise TypeError(f"converter {converter} cannot take {type(value).__name__}")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ZoneRule):
        return value.name
    if isinstance(value, Transition):
        raise TypeError("a DST transition has no text form; pick a transition converter")
    return str(value)


def _zone(converter: Converter, rule: ZoneRule, time_zones: Mapping[str, str]) -> str | None:
    offset = rule.std_offset
    if converter is Converter.POSIX:
        return rule.posix()
    if converter is Converter.UTC_OFFSET_SECONDS:
        return str(offset)
    if converter is Converter.UTC_OFFSET_HOURS:
        hours, minutes = _hours_minutes(offset)
        sign = "-" if offset < 0 else "+"
        return f"{sign}{hours}:{minutes:02d}" if minutes else f"{sign}{hours}"
    if converter is Converter.GMT_OFFSET:
        hours, minutes = _hours_minutes(offset)
        return f"GMT{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"
    if converter is Converter.UTC_OFFSET_QUARTER_HOURS:
        if offset % 900:
            raise Unrepresentable(f"{rule.name}: offset {offset}s is not in quarter hours")
        return str(offset // 900)
    if converter is Converter.CISCO_DST_RULE:
        return _cisco_rule(rule)
    if converter is Converter.ZONE_TABLE:
        return _table(rule, time_zones)
    raise TypeError(f"converter {converter} cannot take a time zone")


def _hours_minutes(offset: int) -> tuple[int, int]:
    if abs(offset) % 60:
        raise Unrepresentable(f"offset {offset}s has seconds")
    hours, rest = divmod(abs(offset), _HOUR)
    return hours, rest // 60


def _cisco_rule(rule: ZoneRule) -> str | None:
    if rule.start is None or rule.end is None or rule.dst_save is None:
        if rule.observes_dst:
            raise Unrepresentable(f"{rule.name}: DST rule is not month/week/weekday")
        return None

    def change(transition: Transition) -> str:
        day = -1 if transition.week == 5 else (transition.week - 1) * 7 + 1
        weekday = _monday_first(transition.weekday)
        return f"{transition.month}/{day}/{weekday}/{_hms(transition.seconds)}"

    save = rule.dst_save
    sign = "-" if save < 0 else ""
    return f"start={change(rule.start)};end={change(rule.end)};save={sign}{_hms(abs(save))}"


def _hms(seconds: int) -> str:
    if not 0 <= seconds < _DAY:
        raise Unrepresentable(f"time of day {seconds}s is outside 0-24 h")
    hours, rest = divmod(seconds, _HOUR)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes}:{seconds}"


def _table(rule: ZoneRule, time_zones: Mapping[str, str]) -> str:
    if rule.name in time_zones:
        return time_zones[rule.name]
    wanted = rule.posix()
    for name in sorted(time_zones):
        if zone_rule(name).posix() == wanted:
            return time_zones[name]
    raise Unrepresentable(f"{rule.name}: no zone with the same rule in the profile's table")


def _transition(converter: Converter, transition: Transition) -> str | None:
    last = transition.week == 5
    if converter is Converter.MONTH:
        return str(transition.month)
    if converter is Converter.HOUR:
        return str(_whole_hour(transition.seconds))
    if converter is Converter.WEEKDAY_SUN0:
        return str(transition.weekday)
    if converter is Converter.WEEKDAY_SUN1:
        return str(transition.weekday + 1)
    if converter is Converter.WEEKDAY_MON1:
        return str(_monday_first(transition.weekday))
    if converter is Converter.WEEK_LAST5:
        return str(transition.week)
    if converter is Converter.WEEK_LAST_MINUS1:
        return "-1" if last else str(transition.week)
    if converter is Converter.DAY_ON_OR_AFTER:
        return None if last else str((transition.week - 1) * 7 + 1)
    if converter is Converter.LAST_IN_MONTH:
        return "true" if last else "false"
    if converter is Converter.MONTH_WEEK_WEEKDAY_HOUR:
        hour = _whole_hour(transition.seconds)
        weekday = _monday_first(transition.weekday)
        return f"{transition.month}/{transition.week}/{weekday}/{hour}"
    raise TypeError(f"converter {converter} cannot take a DST transition")


def _whole_hour(seconds: int) -> int:
    if seconds % _HOUR or not 0 <= seconds < _DAY:
        raise Unrepresentable(f"time of day {seconds}s is not a whole hour of the day")
    return seconds // _HOUR


def _monday_first(weekday: int) -> int:
    """POSIX 0=Sunday..6 to 1=Monday..7=Sunday."""
    return 7 if weekday == 0 else weekday
