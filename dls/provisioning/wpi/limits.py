"""Per-process bounds of the WPI device path: admission under overload, and rate limits.

:class:`Admission` bounds the WPI interactions a process has open and the requests it is
working on. A message that would open a new interaction is refused first (503 with
``Retry-After``) so interactions already admitted can finish: half-done interactions
are the most expensive thing to lose in a boot storm, because the phone starts over.
``Retry-After`` grows with the queue outside the door: phones refused per second, times
how long they were told to wait, is how many are waiting; divided by the interactions
finished per second, it is how long the last of them will wait anyway. Telling them so
spares the server answering the same phone twenty 503s.

:class:`RateLimit` is a token bucket, :class:`KeyedRateLimit` one bucket per key (source
address, MAC) in bounded memory: when the table is full the oldest keys are dropped,
which errs towards allowing, never towards growing.
"""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = [
    "RETRY_AFTER_MAX",
    "RETRY_AFTER_MIN",
    "Admission",
    "KeyedRateLimit",
    "RateLimit",
    "Ticket",
]

RETRY_AFTER_MIN = 5  # seconds; what a refused phone is told when the queue is short
RETRY_AFTER_MAX = 60  # seconds; phones may give up on longer waits (our bound)
_WINDOW = 10  # seconds of refusals and completions the estimate looks at


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
        "_open",
        "_refused",
        "_retry_after",
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
        self._refused = _Counter()
        self._finished = _Counter()
        self._retry_after = RETRY_AFTER_MIN

    @property
    def open_interactions(self) -> int:
        self._expire(time.monotonic())
        return len(self._open)

    def admit(self, *, continuing: bool) -> Ticket | None:
        """A ticket, or None: answer 503. ``continuing``: the request names a session."""
        if self.active >= self.max_active or (
            not continuing and self.open_interactions >= self.max_open
        ):
            self._refused.add(time.monotonic())
            return None
        self.active += 1
        return Ticket(self)

    def finished(self) -> None:
        """An interaction ended (CleanUp sent), whichever process opened it."""
        self._finished.add(time.monotonic())

    def retry_after(self) -> int:
        """Seconds a refused phone should wait: the estimated queue over the throughput."""
        now = time.monotonic()
        refused = self._refused.rate(now)
        finished = max(self._finished.rate(now), 1.0)
        waiting = refused * self._retry_after
        self._retry_after = int(min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, waiting / finished)))
        return self._retry_after

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


class _Counter:
    """Events per second over the last ``_WINDOW`` seconds, in one-second buckets."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: OrderedDict[int, int] = OrderedDict()

    def add(self, now: float) -> None:
        second = int(now)
        self._buckets[second] = self._buckets.get(second, 0) + 1
        while len(self._buckets) > _WINDOW:
            self._buckets.popitem(last=False)

    def rate(self, now: float) -> float:
        oldest = int(now) - _WINDOW
        return sum(n for second, n in self._buckets.items() if second > oldest) / _WINDOW


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
