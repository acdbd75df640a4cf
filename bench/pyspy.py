"""Sample a server under load with py-spy and summarise where its event-loop thread spends
its time: inclusive and self shares per function, from py-spy's collapsed ("raw") output.

Only the main (event-loop) thread is summarised by default: with aiosqlite every database
connection has a thread of its own that py-spy counts as busy while it waits on its queue,
which would swamp the figures; their real CPU time is small (check ``/proc/<pid>/task``).
py-spy is optional: ``pip install py-spy`` into the venv.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_FRAME = re.compile(r"(.*) \((.*?):(\d+)\)$")


def find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(
    py_spy: str, pid: int, output: Path, duration_s: int, rate: int = 200
) -> subprocess.Popen[bytes]:
    """py-spy record on ``pid`` and its children (workers), collapsed stacks per thread."""
    command = [
        py_spy, "record", "--pid", str(pid), "--subprocesses", "--threads", "--nonblocking",
        "--rate", str(rate), "--duration", str(duration_s), "--format", "raw",
        "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group(2).split("site-packages/")[-1]
    path = re.sub(r".*/(dls|bench)/", r"\1/", path)
    return f"{match.group(1)} ({path})"


def summarise(raw: Path, top: int = 30, thread: str = "MainThread") -> str:
    """Inclusive and self percentages of the samples of ``thread`` (all processes)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        # frames[0] is the process, frames[1] the thread with --threads.
        if thread and (len(frames) < 2 or thread not in frames[1]):
            continue
        frames = [_short(frame) for frame in frames[2:]] or ["(idle)"]
        count = int(count_text)
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return f"no samples of {thread or 'any thread'} in {raw}"
    lines = [f"{total} samples of {thread or 'all threads'}; inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30))
