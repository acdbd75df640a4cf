"""Zone rules from tzdata's POSIX footers, and each vendor's time zone encoding."""

from __future__ import annotations

import pytest

from dls.provisioning.files.render.converters import Unrepresentable, convert
from dls.provisioning.files.render.timezones import (
    Transition,
    ZoneRule,
    ZoneRuleError,
    parse_posix_tz,
    zone_rule,
)
from dls.provisioning.files.vocabulary import Converter


def test_berlin_matches_the_reference_example_exactly() -> None:
    # reference §4: <P64>CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00</P64>
    assert zone_rule("Europe/Berlin").posix() == "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00"


def test_rule_fields() -> None:
    rule = zone_rule("America/New_York")
    assert (rule.std_offset, rule.dst_offset, rule.dst_save) == (-18000, -14400, 3600)
    assert rule.start == Transition(month=3, week=2, weekday=0, seconds=7200)
    assert rule.end == Transition(month=11, week=1, weekday=0, seconds=7200)


def test_zones_without_dst() -> None:
    kolkata = zone_rule("Asia/Kolkata")
    assert (kolkata.std_offset, kolkata.observes_dst, kolkata.start) == (19800, False, None)
    assert zone_rule("Asia/Dubai").posix() == "<+04>-4"


def test_unknown_zone() -> None:
    with pytest.raises(ZoneRuleError):
        zone_rule("Nowhere/Special")


@pytest.mark.parametrize(
    ("text", "std", "dst", "start"),
    [
        ("UTC0", 0, None, None),
        ("<+0545>-5:45", 20700, None, None),
        ("NST3:30NDT,M3.2.0,M11.1.0", -12600, -9000, Transition(3, 2, 0, 7200)),
        ("<-02>2<-01>,M3.5.0/-1,M10.5.0/0", -7200, -3600, Transition(3, 5, 0, -3600)),
        ("EST5EDT,0/0,J365/25", -18000, -14400, None),  # Julian days: no rule we can express
    ],
)
def test_parse_posix(text: str, std: int, dst: int | None, start: Transition | None) -> None:
    rule = parse_posix_tz("Test/Zone", text)
    assert (rule.std_offset, rule.dst_offset, rule.start) == (std, dst, start)


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ZoneRuleError):
        parse_posix_tz("Test/Zone", "not a rule")


BERLIN = zone_rule("Europe/Berlin")


@pytest.mark.parametrize(
    ("converter", "zone", "expected"),
    [
        (Converter.UTC_OFFSET_HOURS, "Europe/Berlin", "+1"),  # Yealink
        (Converter.UTC_OFFSET_HOURS, "Asia/Kolkata", "+5:30"),
        (Converter.UTC_OFFSET_HOURS, "America/St_Johns", "-3:30"),
        (Converter.UTC_OFFSET_HOURS, "UTC", "+0"),
        (Converter.UTC_OFFSET_SECONDS, "Europe/Berlin", "3600"),  # Poly
        (Converter.GMT_OFFSET, "Europe/Berlin", "GMT+01:00"),  # Cisco, reference example
        (Converter.GMT_OFFSET, "America/St_Johns", "GMT-03:30"),
        (Converter.UTC_OFFSET_QUARTER_HOURS, "Europe/Berlin", "4"),  # Fanvil
        (Converter.UTC_OFFSET_QUARTER_HOURS, "Asia/Kathmandu", "23"),
        (
            Converter.CISCO_DST_RULE,
            "Europe/Berlin",
            "start=3/-1/7/2:0:0;end=10/-1/7/3:0:0;save=1:0:0",
        ),
        (
            Converter.CISCO_DST_RULE,
            "America/New_York",
            "start=3/8/7/2:0:0;end=11/1/7/2:0:0;save=1:0:0",
        ),
        (Converter.CISCO_DST_RULE, "Asia/Kolkata", None),
        (Converter.TEXT, "Europe/Berlin", "Europe/Berlin"),  # Gigaset takes the IANA name
    ],
)
def test_zone_converters(converter: Converter, zone: str, expected: str | None) -> None:
    assert convert(converter, zone_rule(zone)) == expected


@pytest.mark.parametrize(
    ("converter", "expected_start"),
    [
        (Converter.MONTH_WEEK_WEEKDAY_HOUR, "3/5/7/2"),  # Yealink's own example for Europe
        (Converter.MONTH, "3"),
        (Converter.HOUR, "2"),
        (Converter.WEEKDAY_SUN0, "0"),
        (Converter.WEEKDAY_SUN1, "1"),
        (Converter.WEEKDAY_MON1, "7"),
        (Converter.WEEK_LAST5, "5"),
        (Converter.WEEK_LAST_MINUS1, "-1"),
        (Converter.DAY_ON_OR_AFTER, None),
        (Converter.LAST_IN_MONTH, "true"),
    ],
)
def test_transition_converters(converter: Converter, expected_start: str | None) -> None:
    assert BERLIN.start is not None
    assert convert(converter, BERLIN.start) == expected_start


def test_second_sunday_is_on_or_after_the_eighth() -> None:
    start = zone_rule("America/New_York").start
    assert start is not None
    assert convert(Converter.DAY_ON_OR_AFTER, start) == "8"
    assert convert(Converter.LAST_IN_MONTH, start) == "false"


def test_what_a_format_cannot_say_is_unrepresentable() -> None:
    odd = ZoneRule("Test/Odd", "ODD", 1000)
    with pytest.raises(Unrepresentable):
        convert(Converter.UTC_OFFSET_QUARTER_HOURS, odd)
    nuuk = zone_rule("America/Nuuk")  # DST starts at -1:00 local time
    assert nuuk.start is not None
    with pytest.raises(Unrepresentable):
        convert(Converter.HOUR, nuuk.start)
    with pytest.raises(Unrepresentable):
        convert(Converter.CISCO_DST_RULE, nuuk)


def test_zone_table_falls_back_to_a_zone_with_the_same_rule() -> None:
    table = {"Europe/Paris": "FRA+1", "America/New_York": "USA-5"}
    assert convert(Converter.ZONE_TABLE, zone_rule("Europe/Paris"), time_zones=table) == "FRA+1"
    assert convert(Converter.ZONE_TABLE, zone_rule("Europe/Vienna"), time_zones=table) == "FRA+1"
    assert convert(Converter.ZONE_TABLE, zone_rule("America/Toronto"), time_zones=table) == "USA-5"
    with pytest.raises(Unrepresentable):
        convert(Converter.ZONE_TABLE, zone_rule("Asia/Kolkata"), time_zones=table)


def test_url_and_interval_converters() -> None:
    url = "https://prov.example.net/fw/grandstream"
    assert convert(Converter.URL_WITHOUT_SCHEME, url) == "prov.example.net/fw/grandstream"
    assert convert(Converter.URL_SCHEME, url) == "https"
    assert convert(Converter.URL_SCHEME, "prov.example.net/fw") is None
    assert convert(Converter.MINUTES_TO_SECONDS, 60) == "3600"
    assert convert(Converter.TEXT, True) == "true"
