"""Per-process bounds: admission under overload, token buckets, the quiet log, MACs."""

from __future__ import annotations

import time

import pytest

from dls.provisioning.wpi.identity import plain_mac
from dls.provisioning.wpi.limits import (
    MIN_THROUGHPUT,
    RETRY_AFTER_MAX,
    RETRY_AFTER_MIN,
    TURN_MARGIN,
    Admission,
    KeyedRateLimit,
    RateLimit,
)


def test_new_interactions_are_refused_first_and_admitted_ones_continue() -> None:
    admission = Admission(max_open=2, max_active=3, interaction_ttl=60)
    admission.opened("a")
    admission.opened("b")
    assert admission.admit(continuing=False) is None
    tickets = [admission.admit(continuing=True) for _ in range(3)]
    assert all(tickets) and admission.admit(continuing=True) is None
    for ticket in tickets:
        with ticket:  # type: ignore[union-attr]
            pass
    admission.closed("a")
    assert admission.admit(continuing=False) is not None


def test_open_interactions_expire_when_their_end_is_seen_elsewhere() -> None:
    admission = Admission(max_open=1, max_active=10, interaction_ttl=0)
    admission.opened("x")
    assert admission.open_interactions == 0


def test_token_buckets() -> None:
    start = time.monotonic()
    bucket = RateLimit(rate=1.0, burst=2)
    assert [bucket.allow(now=start) for _ in range(3)] == [True, True, False]
    assert bucket.allow(now=start + 1.0)
    keyed = KeyedRateLimit(rate=0.0, burst=1, max_keys=2)
    assert keyed.allow("a") and not keyed.allow("a")
    assert keyed.allow("b") and keyed.allow("c")
    assert keyed.allow("a")  # dropped when the table was full: errs towards allowing


@pytest.mark.parametrize(
    ("text", "mac"),
    [
        ("00:1A:E8:12:34:56", "001ae8123456"),
        ("00-1a-e8-12-34-56", "001ae8123456"),
        ("001A.E812.3456", "001ae8123456"),
        ("001ae8123456", "001ae8123456"),
        ("00:1A:E8:12:34", None),
        ("zz1ae8123456", None),
        ("", None),
        (None, None),
        ("0" * 40, None),
    ],
)
def test_plain_mac(text: str | None, mac: str | None) -> None:
    assert plain_mac(text) == mac


def test_retry_after_gives_each_refused_phone_a_turn_at_the_rate_interactions_finish() -> None:
    admission = Admission(max_open=0, max_active=10, interaction_ttl=60)
    now = 1000.0
    # Cold: nothing finished yet, turns MIN_THROUGHPUT a second from RETRY_AFTER_MIN on.
    per_second = int(MIN_THROUGHPUT * TURN_MARGIN)
    waits = [admission.retry_after(now) for _ in range(per_second + 1)]
    assert set(waits[: per_second // 3]) == {RETRY_AFTER_MIN}
    assert waits[-1] == RETRY_AFTER_MIN + 1
    # Later the server finishes about 200 interactions a second: 2,400 phones refused at
    # once are told to come back over the ten seconds it needs for them (turns a fifth
    # closer than that), in order.
    now += 100
    for tick in range(2000):
        admission.finished(now - 10 + tick / 200)
    waits = [admission.retry_after(now) for _ in range(2400)]
    assert waits == sorted(waits)
    assert waits[0] == RETRY_AFTER_MIN and RETRY_AFTER_MIN + 9 <= waits[-1] <= RETRY_AFTER_MIN + 11
    assert 200 <= waits.count(RETRY_AFTER_MIN + 5) <= 280
    # A queue longer than phones are willing to wait is spread over the second half of
    # the bound, not piled on its last second...
    for _ in range(200 * RETRY_AFTER_MAX):
        admission.retry_after(now)
    overflow = [admission.retry_after(now) for _ in range(1000)]
    assert min(overflow) >= RETRY_AFTER_MAX // 2 and max(overflow) <= RETRY_AFTER_MAX
    assert len(set(overflow)) > RETRY_AFTER_MAX // 4
    # ...and turns that have passed are not owed to anyone.
    assert admission.retry_after(now + 3600) == RETRY_AFTER_MIN


def test_turns_follow_the_rate_the_server_sustained_not_the_rate_while_refusing() -> None:
    admission = Admission(max_open=0, max_active=10, interaction_ttl=60)
    now = 5000.0
    for second in range(30):  # 200 a second, then 10 while a storm is being turned away
        for tick in range(200 if second < 10 else 10):
            admission.finished(now - 30 + second + tick / 200)
    waits = [admission.retry_after(now) for _ in range(2400)]
    assert RETRY_AFTER_MIN + 9 <= waits[-1] <= RETRY_AFTER_MIN + 11  # 2,400 at 240/s
