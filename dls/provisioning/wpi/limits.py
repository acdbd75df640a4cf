"""Per-process bounds of the WPI device path: admission under overload, and rate limits.

:class:`Admission` bounds the WPI interactions a process has open and the requests it is
working on. A message that would open a new interaction is refused first (503 with
``Retry-After``) so interactions already admitted can finish: half-done interactions
are the most expensive thing to lose in a boot storm, because the phone starts over.

``Retry-After`` gives each refused phone a turn: the queue outside the door is a
calendar, and the next phone refused is told to come back a little less than one
interaction-time (1 / the interactions a second this process has shown it can finish)
after the last one told, and never sooner than ``RETRY_AFTER_MIN``. The returning phones
then arrive slightly faster than the server finishes interactions, so it neither idles
while thousands wait (turns too far apart) nor spends itself answering the same phone
twenty 503s (too close). Once the calendar reaches ``RETRY_AFTER_MAX`` the overflow is
told a random wait in its second half and given a turn when it comes back.

:class:`RateLimit` is a token bucket, :class:`KeyedRateLimit` one bucket per key (source
address, MAC) in bounded memory: when the table is full the oldest keys are dropped,
which errs towards allowing, never towards growing.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict

__all__ = [
    "MIN_THROUGHPUT",
    "RETRY_AFTER_MAX",
    "RETRY_AFTER_MIN",
    "TURN_MARGIN",
    "Admission",
    "KeyedRateLimit",
    "RateLimit",
    "Ticket",
]

RETRY_AFTER_MIN = 5  # seconds; what a refused phone is told when the queue is short
RETRY_AFTER_MAX = 60  # seconds; phones may give up on longer waits (our bound)
# Interactions a second assumed until the process has shown more. An idle server costs
# a storm more than a phone refused twice, so the guess is what one worker does on a
# small machine (100-200 on 2 cores, BENCHMARKS.md), and turns are given a fifth faster
# than the capacity: phones that find the door shut again get a later turn.
MIN_THROUGHPUT = 100.0
TURN_MARGIN = 1.2
_MEMORY = 60  # seconds of completions the capacity estimate looks back on
_SPAN = 5  # seconds over which a completion rate counts as sustained


class Ticket:
    """One admitted request; releasing it frees its slot."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_: object) -> None:
        self._admission.active -= 1


class Admission:
    """Bounds open interactions and concurrent requests of one process.

    Interactions are counted by their session token from the answer that opened them to
    the CleanUp this process sends, or until ``interaction_ttl`` passes: a session may end
    on another worker, so entries expire rather than leak.
    """

    __slots__ = (
        "_finished",
        "_next_turn",
        "_open",
        "active",
        "interaction_ttl",
        "max_active",
        "max_open",
    )

    def __init__(self, max_open: int, max_active: int, interaction_ttl: float) -> None:
        self.max_open = max_open
        self.max_active = max_active
        self.interaction_ttl = interaction_ttl
        self.active = 0
        self._open: OrderedDict[str, float] = OrderedDict()  # token hash -> deadline
        self._finished = _Completions()
        self._next_turn = 0.0  # monotonic time the next refused phone is told to come back

    @property
    def open_interactions(self) -> int:
        self._expire(time.monotonic())
        return len(self._open)

    def admit(self, *, continuing: bool) -> Ticket | None:
        """A ticket, or None: answer 503. ``continuing``: the request names a session."""
        if self.active >= self.max_active or (
            not continuing and self.open_interactions >= self.max_open
        ):
            return None
        self.active += 1
        return Ticket(self)

    def finished(self, now: float | None = None) -> None:
        """An interaction ended (CleanUp sent), whichever process opened it."""
        self._finished.add(time.monotonic() if now is None else now)

    def retry_after(self, now: float | None = None) -> int:
        """Seconds a refused phone should wait: until its turn in the calendar."""
        now = time.monotonic() if now is None else now
        turn = max(self._next_turn, now + RETRY_AFTER_MIN)
        if turn - now > RETRY_AFTER_MAX:
            # The calendar is full: spread the overflow over the second half of what
            # phones will wait, where it fills the gaps left by phones that do not
            # return, rather than piling it on the last second.
            return random.randint(RETRY_AFTER_MAX // 2, RETRY_AFTER_MAX)
        capacity = max(self._finished.capacity(now), MIN_THROUGHPUT)
        self._next_turn = turn + 1.0 / (capacity * TURN_MARGIN)
        return round(turn - now)

    def opened(self, token_hash: str) -> None:
        self._open[token_hash] = time.monotonic() + self.interaction_ttl
        self._open.move_to_end(token_hash)

    def closed(self, token_hash: str | None) -> None:
        if token_hash is not None:
            self._open.pop(token_hash, None)

    def _expire(self, now: float) -> None:
        while self._open:
            token, deadline = next(iter(self._open.items()))
            if deadline > now:
                break
            del self._open[token]


class _Completions:
    """Interactions finished per second, in one-second buckets over the last minute.

    ``capacity`` is the best rate over ``_SPAN`` consecutive seconds in that minute, not
    the current one: while a storm's newcomers are being turned away, the server finishes
    fewer interactions than it will once they stop, and turns given at the current rate
    would leave it idle when they come back."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: OrderedDict[int, int] = OrderedDict()

    def add(self, now: float) -> None:
        second = int(now)
        self._buckets[second] = self._buckets.get(second, 0) + 1
        while len(self._buckets) > _MEMORY:
            self._buckets.popitem(last=False)

    def capacity(self, now: float) -> float:
        current = int(now)
        counts = [self._buckets.get(second, 0) for second in range(current - _MEMORY, current)]
        best = window = sum(counts[:_SPAN])
        for at in range(_SPAN, len(counts)):
            window += counts[at] - counts[at - _SPAN]
            best = max(best, window)
        return best / _SPAN


class RateLimit:
    """A token bucket: ``rate`` per second, bursts up to ``burst``."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class KeyedRateLimit:
    """One token bucket per key, at most ``max_keys`` of them."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, RateLimit] = OrderedDict()

    def allow(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = RateLimit(self.rate, self.burst)
        else:
            self._buckets.move_to_end(key)
        return bucket.allow()
