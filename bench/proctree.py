"""Server CPU time of a process tree, read from ``/proc``.

With a new TLS connection per request the single-threaded load generator saturates
before the server does, so req/s cannot rank servers; CPU seconds spent by the server per
request can (performance notes). The tree is walked so that a supervisor and its
``SO_REUSEPORT`` workers (nginx master/workers, ``dls --workers N``) count together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """utime + stime in clock ticks per process of a tree at one moment."""

    ticks: dict[int, int]

    def seconds_since(self, earlier: CpuSnapshot) -> float:
        """CPU seconds the tree used since ``earlier``; new processes count in full.

        A process that exited in between loses its time (its parent only collects it into
        cutime on wait); workers do not exit during a run, and ``lost_processes`` says so.
        """
        ticks = sum(now - earlier.ticks.get(pid, 0) for pid, now in self.ticks.items())
        return ticks / CLOCK_TICKS_PER_SECOND

    def per_process_seconds_since(self, earlier: CpuSnapshot) -> dict[int, float]:
        """The same per process, to see whether SO_REUSEPORT spread the load."""
        return {
            pid: (now - earlier.ticks.get(pid, 0)) / CLOCK_TICKS_PER_SECOND
            for pid, now in self.ticks.items()
        }

    def lost_processes(self, earlier: CpuSnapshot) -> list[int]:
        return sorted(set(earlier.ticks) - set(self.ticks))


def snapshot(root_pid: int) -> CpuSnapshot:
    """utime + stime of ``root_pid`` and all its descendants, threads included."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    tree, pending = {}, [root_pid]
    while pending:
        pid = pending.pop()
        if pid in stats:
            tree[pid] = stats[pid][1]
            pending.extend(children.get(pid, ()))
    return CpuSnapshot(tree)


def _all_stats() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, utime + stime) for every process still readable."""
    stats = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # exited while we were scanning
            continue
        # comm (field 2) may hold spaces and parentheses; fields after the last ")" are fixed.
        fields = text[text.rindex(")") + 2 :].split()
        parent, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        stats[int(entry.name)] = (parent, utime + stime)
    return stats


def machine_busy_seconds() -> float:
    """CPU seconds all cores of this machine spent running something since boot.

    Compared with the server's and wrk's own time it shows how much of the machine other
    work took during a run, i.e. how noisy the figures are.
    """
    first_line = (PROC / "stat").read_text().split("\n", 1)[0]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, first_line.split()[1:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS_PER_SECOND
