"""The rollout engine's rules, on facts written out by hand: no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from dls.firmware.engine import (
    Complete,
    DeviceState,
    FinishWave,
    Halt,
    ReleaseWave,
    RolloutFacts,
    RolloutStatus,
    TimeOut,
    WaveFacts,
    WavePlan,
    WaveStatus,
    Window,
    classify_report,
    decide,
    plan_waves,
)

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
TIMEOUT = dt.timedelta(hours=1)
STANDARD = (WavePlan(1), WavePlan(10), WavePlan(50), WavePlan(100))


def facts(*waves: WaveFacts, status: RolloutStatus = RolloutStatus.RUNNING, **more) -> RolloutFacts:  # type: ignore[no-untyped-def]
    values = {"failure_threshold_percent": 10, "wave_timeout": TIMEOUT, **more}
    return RolloutFacts(status, waves, **values)


def pending(index: int, size: int) -> WaveFacts:
    return WaveFacts(index, size, WaveStatus.PENDING)


def active(index: int, size: int, installed: int = 0, failed: int = 0, **more) -> WaveFacts:  # type: ignore[no-untyped-def]
    deadline = more.pop("deadline_at", NOW + TIMEOUT)
    return WaveFacts(index, size, WaveStatus.ACTIVE, installed, failed, deadline, **more)


def done(index: int, size: int, failed: int = 0) -> WaveFacts:
    return WaveFacts(index, size, WaveStatus.DONE, size - failed, failed, NOW, NOW)


# --- planning ------------------------------------------------------------------------------


def test_percentages_are_cumulative_and_round_up() -> None:
    waves = plan_waves(list(range(1, 51)), STANDARD, seed="r1")
    assert [len(wave) for wave in waves] == [1, 4, 20, 25]
    assert sorted(device for wave in waves for device in wave) == list(range(1, 51))


def test_the_plan_is_stable_per_seed_and_differs_between_seeds() -> None:
    devices = list(range(1, 101))
    assert plan_waves(devices, STANDARD, "a") == plan_waves(devices, STANDARD, "a")
    canaries = {plan_waves(devices, STANDARD, seed)[0][0] for seed in "abcdefgh"}
    assert len(canaries) > 1  # not always the oldest device


def test_explicit_devices_stay_in_their_wave() -> None:
    plans = (WavePlan(devices=(7, 9)), WavePlan(50), WavePlan(100))
    waves = plan_waves(list(range(1, 11)), plans, seed="x")
    assert waves[0] == [7, 9]
    assert [len(wave) for wave in waves[1:]] == [4, 4]
    assert 7 not in waves[1] + waves[2]


def test_only_explicit_waves_take_only_those_devices() -> None:
    waves = plan_waves(list(range(1, 11)), (WavePlan(devices=(3,)),), seed="x")
    assert waves == [[3]]


def test_small_fleets_get_empty_waves_not_lost_devices() -> None:
    waves = plan_waves([1, 2, 3], STANDARD, seed="x")
    assert [len(wave) for wave in waves] == [1, 0, 1, 1]


# --- deciding ----------------------------------------------------------------------------------


def test_a_new_rollout_releases_its_first_wave() -> None:
    decisions = decide(facts(pending(0, 1), pending(1, 4)), NOW)
    assert decisions == (ReleaseWave(0, NOW + TIMEOUT),)


def test_nothing_moves_while_the_wave_is_open() -> None:
    assert decide(facts(active(0, 4, installed=3), pending(1, 4)), NOW) == ()


def test_a_finished_wave_releases_the_next() -> None:
    decisions = decide(facts(active(0, 4, installed=4), pending(1, 10)), NOW)
    assert decisions == (FinishWave(0), ReleaseWave(1, NOW + TIMEOUT))


def test_the_last_wave_completes_the_rollout() -> None:
    decisions = decide(facts(done(0, 1), active(1, 5, installed=5)), NOW)
    assert decisions == (FinishWave(1), Complete())


def test_empty_waves_are_passed_through() -> None:
    decisions = decide(facts(active(0, 1, installed=1), pending(1, 0), pending(2, 2)), NOW)
    assert decisions == (
        FinishWave(0),
        ReleaseWave(1, NOW + TIMEOUT),
        FinishWave(1),
        ReleaseWave(2, NOW + TIMEOUT),
    )


def test_a_failed_canary_halts_before_the_second_wave() -> None:
    decisions = decide(facts(active(0, 1, failed=1), pending(1, 10)), NOW)
    assert len(decisions) == 1 and isinstance(decisions[0], Halt)
    assert "1 of 1" in decisions[0].reason


def test_the_deadline_fails_the_silent_devices_and_may_halt() -> None:
    late = active(0, 1, deadline_at=NOW - dt.timedelta(seconds=1))
    decisions = decide(facts(late, pending(1, 10)), NOW)
    assert decisions[0] == TimeOut(0)
    assert isinstance(decisions[1], Halt)


def test_failures_within_the_threshold_go_on() -> None:
    # 1 of 10 released devices failed: 10 %, not more than the threshold of 10 %.
    late = active(1, 9, installed=9, deadline_at=NOW)
    decisions = decide(facts(done(0, 1, failed=1), late, pending(2, 10)), NOW)
    assert decisions == (FinishWave(1), ReleaseWave(2, NOW + TIMEOUT))
    # one more and it halts, mid-wave, before the wave is over
    decisions = decide(facts(done(0, 1, failed=1), active(1, 9, failed=1), pending(2, 10)), NOW)
    assert isinstance(decisions[0], Halt)


def test_a_zero_threshold_halts_on_the_first_failure() -> None:
    decisions = decide(
        facts(active(0, 50, installed=10, failed=1), failure_threshold_percent=0), NOW
    )
    assert isinstance(decisions[0], Halt)


def test_accepted_failures_do_not_count() -> None:
    rollout = facts(done(0, 1, failed=1), active(1, 4, installed=4), pending(2, 5))
    assert isinstance(decide(rollout, NOW)[0], Halt)
    accepted = dataclasses.replace(rollout, accepted_failures=1)
    assert decide(accepted, NOW) == (FinishWave(1), ReleaseWave(2, NOW + TIMEOUT))


@pytest.mark.parametrize("status", [s for s in RolloutStatus if s is not RolloutStatus.RUNNING])
def test_only_a_running_rollout_moves(status: RolloutStatus) -> None:
    late = active(0, 1, deadline_at=NOW - TIMEOUT)
    assert decide(facts(late, pending(1, 1), status=status), NOW) == ()


def test_soak_time_delays_the_next_wave() -> None:
    soak = dt.timedelta(minutes=30)
    rollout = facts(active(0, 1, installed=1), pending(1, 4), soak=soak)
    assert decide(rollout, NOW) == (FinishWave(0),)
    soaked = facts(
        WaveFacts(0, 1, WaveStatus.DONE, 1, 0, NOW, NOW - soak), pending(1, 4), soak=soak
    )
    assert decide(soaked, NOW) == (ReleaseWave(1, NOW + TIMEOUT),)


def test_waves_start_only_inside_the_window() -> None:
    window = Window(dt.time(22, 0), dt.time(5, 0), "Europe/Berlin")
    rollout = facts(pending(0, 1), window=window)
    noon = dt.datetime(2026, 11, 26, 11, 0, tzinfo=dt.UTC)  # 12:00 in Berlin
    night = dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.UTC)  # 00:30 in Berlin
    assert decide(rollout, noon) == ()
    assert decide(rollout, night) == (ReleaseWave(0, night + TIMEOUT),)


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    fridays = Window(dt.time(22, 0), dt.time(5, 0), "UTC", frozenset({4}))
    friday_night = dt.datetime(2026, 11, 27, 23, 0, tzinfo=dt.UTC)  # a Friday
    saturday_early = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)
    saturday_night = dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.UTC)
    assert fridays.is_open(friday_night)
    assert fridays.is_open(saturday_early)
    assert not fridays.is_open(saturday_night)
    office = Window(dt.time(9, 0), dt.time(17, 0), "UTC")
    assert office.is_open(dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC))
    assert not office.is_open(dt.datetime(2026, 11, 26, 17, 0, tzinfo=dt.UTC))


def test_windows_round_trip_through_json() -> None:
    window = Window(dt.time(22, 0), dt.time(5, 30), "Europe/Berlin", frozenset({0, 4}))
    assert Window.from_json(window.to_json()) == window
    assert Window.from_json(None) is None


# --- reports -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("2.0", DeviceState.INSTALLED),
        ("1.0", None),  # still the old one: it has not installed yet
        ("1.5", DeviceState.FAILED),  # neither: a wrong image
    ],
)
def test_reports_of_an_offered_device(reported: str, expected: DeviceState | None) -> None:
    assert classify_report("2.0", "1.0", reported) is expected


def test_a_device_with_an_unknown_start_fails_only_by_timeout() -> None:
    assert classify_report("2.0", None, "1.5") is None
    assert classify_report("2.0", None, "2.0") is DeviceState.INSTALLED
