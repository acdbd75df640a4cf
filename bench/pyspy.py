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
    py_spy: str,
    pid: int,
    output: Path,
    duration_s: int,
    rate: int = 200,
    *,
    children: bool = True,
) -> subprocess.Popen[bytes]:
    """py-spy record on ``pid`` and, with ``children``, its children (workers): collapsed
    stacks per thread."""
    command = [
        py_spy, "record", "--pid", str(pid), *(["--subprocesses"] if children else []),
        "--threads", "--nonblocking", "--rate", str(rate), "--duration", str(duration_s),
        "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group(2).split("site-packages/")[-1]
    path = re.sub(r".*/(dls|bench)/", r"\1/", path)
    return f"{match.group(1)} ({path})"


# (category, test on the short frame names of one sample, leaf last); first match wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ledger (batched writes)", ("Ledger.flush", "Ledger._run")),
    (
        "database read (SQLAlchemy, aiosqlite/asyncpg)",
        ("load_context", "sqlalchemy/", "aiosqlite/", "asyncpg", "dls/db/reads.py"),
    ),
    (
        "render cache lookup, and rendering on a miss",
        ("resolve_settings", "render (dls", "_device_file"),
    ),
    ("Digest / secrets", ("_authenticate", "digest.py", "secretbox.py")),
    ("access log", ("AccessLogger", "logging/")),
    ("metrics", ("prometheus_client",)),
    ("detection", ("detect.py",)),
    ("TLS handshake", ("do_handshake",)),
    ("other dls request code (middleware, handler, response)", ("request_context",)),
    ("HTTP and TLS records (aiohttp, ssl)", ("ssl.py", "aiohttp/", "yarl/", "multidict")),
)
LOOP_ENTRY = "Runner.run (asyncio/runners.py)"


def categories(raw: Path, thread: str = "MainThread") -> list[tuple[str, float]]:
    """Share of ``thread``'s samples per category (CATEGORIES), largest first."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _samples(raw, thread):
        total += count
        # Only what runs below the event loop: every sample has dls/server.py above it.
        if LOOP_ENTRY in frames:
            frames = frames[len(frames) - frames[::-1].index(LOOP_ENTRY) :]
        joined = ";".join(frames)
        for name, needles in CATEGORIES:
            if any(needle in joined for needle in needles):
                counts[name] += count
                break
        else:
            counts["event loop itself (uvloop: epoll, sockets, callbacks)"] += count
    return [(name, 100 * n / total) for name, n in counts.most_common()] if total else []


def _samples(raw: Path, thread: str) -> list[tuple[list[str], int]]:
    found = []
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        # Process frames first (a supervisor, then its worker), then the thread (--threads).
        at = next((i for i, frame in enumerate(frames) if frame.startswith("thread (")), None)
        if at is None or (thread and thread not in frames[at]):
            continue
        found.append(([_short(frame) for frame in frames[at + 1 :]] or ["(idle)"], int(count_text)))
    return found


def summarise(raw: Path, top: int = 30, thread: str = "MainThread") -> str:
    """Inclusive and self percentages of the samples of ``thread`` (all processes)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in _samples(raw, thread):
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return f"no samples of {thread or 'any thread'} in {raw}"
    lines = [f"{total} samples of {thread or 'all threads'}; by category:"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in categories(raw, thread)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30))
