"""The rollout engine: pure decisions over a rollout's facts, no I/O.

A rollout offers firmware versions to a fixed set of devices in waves (a 1 % canary, then
10 %, 50 %, 100 %, or explicit device lists). The devices of a released wave are
*offered* the rollout's version; they go *downloading* when they fetch the image and end
*installed* when they report the target version, or *failed* when they report another
version, a delivery channel reports a failure, or the wave's timeout passes first.

``decide`` is called by any instance's background driver with the facts it read from the
database and returns what to change: time out a wave's stragglers, halt, finish a wave,
release the next one (inside the maintenance window, after the soak time), complete. The
driver applies the decisions in one transaction guarded by the rollout row's version, so
two instances deciding on the same facts cannot both apply.

Rules, in the order ``decide`` applies them:

1. Only a *running* rollout moves. Paused (an admin) and halted (the engine) keep offering
   the version to devices already released, but release nothing new and time nothing out.
2. When the active wave's deadline passes, its devices without a final state fail.
3. When the failed devices exceed ``failure_threshold_percent`` of the devices released so
   far (failures an admin accepted on resuming not counted), the rollout halts.
4. When every device of the active wave is final, the wave is done; the next one is
   released once the soak time has passed and the maintenance window is open. After the
   last wave the rollout is complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dls.firmware.versions import same_version

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATES",
    "OPEN_STATES",
    "Complete",
    "Decision",
    "DeviceState",
    "FinishWave",
    "Halt",
    "ReleaseWave",
    "RolloutFacts",
    "RolloutStatus",
    "TimeOut",
    "WaveFacts",
    "WavePlan",
    "WaveStatus",
    "Window",
    "classify_report",
    "decide",
    "plan_waves",
]


class RolloutStatus(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # by an admin: nothing new is released, released devices keep the offer
    HALTED = "halted"  # by the engine, failures over the threshold; otherwise like paused
    COMPLETED = "completed"  # every wave done; the version became the target at its level
    ABORTED = "aborted"  # by an admin: the version is no longer offered (devices go back)


# A rollout in one of these offers its version to its released devices.
ACTIVE_STATUSES = frozenset({RolloutStatus.RUNNING, RolloutStatus.PAUSED, RolloutStatus.HALTED})


class DeviceState(enum.StrEnum):
    PENDING = "pending"  # its wave is not released yet
    OFFERED = "offered"  # its configuration points at the new image
    DOWNLOADING = "downloading"  # it fetched (part of) the image
    INSTALLED = "installed"  # it reported the target version
    FAILED = "failed"  # another version, a reported failure, or no report in time


FINAL_STATES = frozenset({DeviceState.INSTALLED, DeviceState.FAILED})
OPEN_STATES = frozenset({DeviceState.OFFERED, DeviceState.DOWNLOADING})


class WaveStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"  # released, devices still open
    DONE = "done"  # every device final


# --- planning -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WavePlan:
    """One wave as an admin asks for it: a cumulative percentage, or explicit devices."""

    percent: int | None = None  # 1..100 of the devices in scope, counted cumulatively
    devices: tuple[int, ...] = ()


def plan_waves(eligible: Sequence[int], plans: Sequence[WavePlan], seed: str) -> list[list[int]]:
    """Device ids per wave.

    Pre: every explicit device is in ``eligible`` and in one wave only; percentages grow
    and the last percentage wave says 100 (checked by the caller, which can name the field).
    Explicit devices stay in their wave. The others are put in a stable pseudo-random order
    (a hash of ``seed`` and the id, so the canary is not always the oldest device) and a
    wave of ``p`` % ends at ``ceil(p / 100 * n)`` of them: a 1 % canary of 50 devices is one
    device, and a percentage wave may come out empty.
    """
    explicit = {device for plan in plans for device in plan.devices}
    rest = sorted(
        (device for device in eligible if device not in explicit),
        key=lambda device: hashlib.sha256(f"{seed}:{device}".encode()).digest(),
    )
    waves: list[list[int]] = []
    taken = 0
    for plan in plans:
        wave = list(plan.devices)
        if plan.percent is not None:
            end = min(len(rest), math.ceil(plan.percent * len(rest) / 100))
            wave += rest[taken:end]
            taken = max(taken, end)
        waves.append(wave)
    return waves


# --- the maintenance window ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Local times a wave may start and an offer may go out; may cross midnight.

    ``weekdays`` (0 = Monday) are the days a window *starts* on: a Friday 22:00-05:00
    window is open until Saturday 05:00.
    """

    start: dt.time
    end: dt.time
    time_zone: str
    weekdays: frozenset[int] = frozenset(range(7))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Window | None:
        """The window as stored: ``{"start": "22:00", "end": "05:00", "time_zone": ...,
        "weekdays": [0, 1, ...]}``; None when no window is set."""
        if not data:
            return None
        return cls(
            dt.time.fromisoformat(data["start"]),
            dt.time.fromisoformat(data["end"]),
            data["time_zone"],
            frozenset(data.get("weekdays", range(7))),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "time_zone": self.time_zone,
            "weekdays": sorted(self.weekdays),
        }

    def is_open(self, now: dt.datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.time_zone))
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= clock < self.end and local.weekday() in self.weekdays
        if clock >= self.start:
            return local.weekday() in self.weekdays
        if clock < self.end:
            return (local.weekday() - 1) % 7 in self.weekdays
        return False


# --- deciding -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaveFacts:
    index: int
    size: int
    status: WaveStatus
    installed: int = 0
    failed: int = 0
    deadline_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def open(self) -> int:
        return self.size - self.installed - self.failed


@dataclass(frozen=True, slots=True)
class RolloutFacts:
    status: RolloutStatus
    waves: tuple[WaveFacts, ...]  # by index, from 0
    failure_threshold_percent: int
    wave_timeout: dt.timedelta
    soak: dt.timedelta = dt.timedelta(0)
    window: Window | None = None
    accepted_failures: int = 0  # failures an admin accepted when resuming


@dataclass(frozen=True, slots=True)
class TimeOut:
    """The wave's deadline passed: its open devices fail."""

    wave: int


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str


@dataclass(frozen=True, slots=True)
class FinishWave:
    wave: int


@dataclass(frozen=True, slots=True)
class ReleaseWave:
    wave: int
    deadline_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Complete:
    pass


Decision = TimeOut | Halt | FinishWave | ReleaseWave | Complete


def decide(facts: RolloutFacts, now: dt.datetime) -> tuple[Decision, ...]:
    """What to change now (rules in the module docstring); empty when nothing is due."""
    if facts.status is not RolloutStatus.RUNNING:
        return ()
    waves = list(facts.waves)
    decisions: list[Decision] = []
    active = _last_released(waves)
    if active is not None:
        wave = waves[active]
        if wave.open and wave.deadline_at is not None and now >= wave.deadline_at:
            decisions.append(TimeOut(active))
            waves[active] = dataclasses.replace(wave, failed=wave.failed + wave.open)
    released = [wave for wave in waves if wave.status is not WaveStatus.PENDING]
    counted = sum(wave.size for wave in released) - facts.accepted_failures
    failed = sum(wave.failed for wave in released) - facts.accepted_failures
    if counted > 0 and failed * 100 > facts.failure_threshold_percent * counted:
        decisions.append(
            Halt(
                f"{failed} of {counted} released devices failed, more than the threshold "
                f"of {facts.failure_threshold_percent} %"
            )
        )
        return tuple(decisions)
    while True:
        finished_at = None
        if active is not None:
            wave = waves[active]
            if wave.open:
                break
            if wave.status is WaveStatus.ACTIVE:
                decisions.append(FinishWave(active))
                wave = waves[active] = dataclasses.replace(
                    wave, status=WaveStatus.DONE, finished_at=now
                )
            finished_at = wave.finished_at
        following = 0 if active is None else active + 1
        if following >= len(waves):
            decisions.append(Complete())
            break
        if finished_at is not None and now < finished_at + facts.soak:
            break
        if facts.window is not None and not facts.window.is_open(now):
            break
        deadline = now + facts.wave_timeout
        decisions.append(ReleaseWave(following, deadline))
        waves[following] = dataclasses.replace(
            waves[following], status=WaveStatus.ACTIVE, deadline_at=deadline
        )
        active = following
    return tuple(decisions)


def _last_released(waves: Sequence[WaveFacts]) -> int | None:
    released = [wave.index for wave in waves if wave.status is not WaveStatus.PENDING]
    return max(released) if released else None


def classify_report(target: str, from_version: str | None, reported: str) -> DeviceState | None:
    """What a version report of an offered device means.

    The target: installed. The version it ran when the rollout began: nothing yet (it
    reports that on every poll until it has installed). Anything else: failed, a wrong
    image or a vendor's own upgrade path; unless its starting version is unknown, in which
    case no report but the target says anything.
    """
    if same_version(reported, target):
        return DeviceState.INSTALLED
    if from_version is None or same_version(reported, from_version):
        return None
    return DeviceState.FAILED
