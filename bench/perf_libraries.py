"""Where a server's CPU goes by library, sampled with Linux ``perf``: OpenSSL's crypto and
TLS, the Python interpreter, the kernel, libc, uvloop, SQLite.

py-spy sees Python frames and attributes native time to the frame that called it, so a
handshake that ran after a slow request can look slower in its profile than it is. perf
samples the CPU itself: the share of each shared library, times the tree's CPU per
request, is what each costs a request, comparable across servers in one run (bare aiohttp
beside dls: the same OpenSSL work, and the rest is the request path). Optional: needs
``perf`` (Debian: linux-perf) and permission to trace the servers (root, or
``kernel.perf_event_paranoid`` <= 1 for one's own processes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

SAMPLES_PER_SECOND = 999

# Shared objects as a reader knows them; the first pattern matching a DSO's name wins.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("OpenSSL crypto (libcrypto)", r"^libcrypto\."),
    ("OpenSSL TLS (libssl)", r"^libssl\."),
    ("Python interpreter (libpython)", r"^libpython|^python3"),
    ("kernel", r"kernel|^\[vdso\]"),
    ("libc (malloc, memcpy)", r"^libc\.|^libm\.|^ld-linux"),
    ("uvloop", r"^loop\.cpython"),
    ("SQLite", r"^libsqlite3|^_sqlite3"),
    ("aiohttp, multidict, yarl (C parts)", r"^_http_|^_multidict|^_quoting|^_helpers"),
)
OTHER = "other"
_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S.*?)\s*$")


def find_perf() -> str | None:
    return shutil.which("perf")


def start(
    perf: str, pids: Iterable[int], output: Path, duration_s: float
) -> subprocess.Popen[bytes]:
    """``perf record`` of these processes (all their threads) for ``duration_s``."""
    command = [
        perf, "record", "--freq", str(SAMPLES_PER_SECOND), "--output", str(output),
        "--pid", ",".join(str(pid) for pid in pids), "--", "sleep", f"{duration_s:.1f}",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def shares(perf: str, recording: Path) -> dict[str, float]:
    """Fraction of the samples per library (``LIBRARIES``, then ``OTHER``)."""
    command = [
        perf, "report", "--input", str(recording), "--stdio", "--sort", "dso",
        "--percent-limit", "0",
    ]  # fmt: skip
    report = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found: dict[str, float] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if match is None or line.startswith("#"):
            continue
        percent, dso = float(match.group(1)), match.group(2)
        library = next((name for name, pattern in LIBRARIES if re.search(pattern, dso)), OTHER)
        found[library] = found.get(library, 0.0) + percent / 100
    return found


def table(per_request: dict[str, dict[str, float]]) -> str:
    """Markdown: CPU ms per request per library, one column per server, and the first
    server's difference to the second."""
    names = list(per_request)
    libraries = [name for name, _ in LIBRARIES] + [OTHER]
    header = ["library", *(f"{name} ms/req" for name in names)]
    if len(names) >= 2:
        header.append(f"{names[0]} - {names[1]}")
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for library in [*libraries, "all"]:
        values = [
            sum(per_request[name].values())
            if library == "all"
            else per_request[name].get(library, 0.0)
            for name in names
        ]
        if library != "all" and not any(value >= 0.0005 for value in values):
            continue
        cells = [f"{value:.3f}" for value in values]
        if len(names) >= 2:
            cells.append(f"{values[0] - values[1]:+.3f}")
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
