"""The load generator: wrk with ``cycle.lua`` over a request list.

wrk is a C event loop, so on this 2-core machine it leaves more CPU to the server than a
Python client would. Three things to know about it over TLS:

- it does not verify the server certificate (SSL_VERIFY_NONE), so ``targets.preflight``
  checks the chain against the CA file instead;
- it cannot present a client certificate, so it can only load a server that lets the
  device in without mutual TLS;
- on reconnect it resumes the previous TLS session; ``full_handshake.c`` stops that for
  the ``new-conn`` scenario.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tools import find_or_install

LUA_SCRIPT = Path(__file__).with_name("cycle.lua")
SHIM_SOURCE = Path(__file__).with_name("full_handshake.c")
RESULT_MARKER = "BENCH_RESULT "
# A request that takes longer counts as a timeout error rather than as latency.
REQUEST_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Request:
    """One line of a request list: a path and the headers a real device would send."""

    path: str
    headers: tuple[tuple[str, str], ...] = ()

    def to_line(self) -> str:
        return "\t".join([self.path, *(f"{name}: {value}" for name, value in self.headers)])

    @classmethod
    def from_line(cls, line: str) -> Request:
        path, *fields = line.rstrip("\n").split("\t")
        headers = tuple(_split_header(text) for text in fields)
        return cls(path, headers)


def _split_header(text: str) -> tuple[str, str]:
    name, separator, value = text.partition(":")
    if not separator:
        raise ValueError(f"header field without ':' in request list: {text!r}")
    return name.strip(), value.strip()


def write_request_list(requests: list[Request], path: Path) -> None:
    path.write_text("".join(request.to_line() + "\n" for request in requests))


def read_request_list(path: Path) -> list[Request]:
    lines = path.read_text().splitlines()
    return [Request.from_line(line) for line in lines if line and not line.startswith("#")]


class Scenario(Enum):
    """How connections are used; the value is the name used on the command line."""

    # Throughput of the HTTP and application path once TLS is set up.
    KEEP_ALIVE = "keep-alive"
    # A full TLS handshake per request, as phones polling hours apart really do.
    NEW_CONNECTION = "new-conn"
    # A new connection per request that resumes the previous TLS session (wrk's default).
    RESUMED = "resumed"

    @property
    def default_connections(self) -> int:
        return 64 if self is Scenario.KEEP_ALIVE else 32

    @property
    def extra_headers(self) -> list[str]:
        return [] if self is Scenario.KEEP_ALIVE else ["Connection: close"]

    @property
    def needs_full_handshake_shim(self) -> bool:
        return self is Scenario.NEW_CONNECTION


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What wrk measured, plus the CPU wrk itself used (to see when the client saturates)."""

    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]
    latency_ms: dict[str, float]
    client_cpu_s: float
    command: list[str] = field(default_factory=list)
    output: str = ""  # wrk's own report, --latency distribution included, kept for the record

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def build_full_handshake_shim(directory: Path) -> Path | None:
    """Compile ``full_handshake.c`` into ``directory``; None (and why) if it cannot."""
    compiler = find_or_install("cc")
    if compiler is None:
        return None
    shim = directory / "full_handshake.so"
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM_SOURCE), "-ldl"]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode:
        print(f"bench: building the full-handshake shim failed: {built.stderr.strip()}")
        return None
    return shim


@dataclass(frozen=True, slots=True)
class LoadGenerator:
    """wrk with ``cycle.lua``; ``shim`` is the LD_PRELOAD library for full handshakes."""

    wrk: str
    threads: int = 1
    shim: Path | None = None

    def supports(self, scenario: Scenario) -> bool:
        return self.shim is not None or not scenario.needs_full_handshake_shim

    def run(
        self,
        url: str,
        request_list: Path,
        scenario: Scenario,
        duration_s: int,
        connections: int | None = None,
        rate: float | None = None,
    ) -> LoadResult:
        """Load ``url`` (scheme, host and port) cycling through ``request_list``: as fast
        as the connections go, or, with ``rate``, each connection pausing between requests
        so that together they offer about ``rate`` requests a second (less what the
        responses' own latency takes; the result says what was achieved)."""
        if not self.supports(scenario):
            raise RuntimeError(f"scenario {scenario.value} needs the full-handshake shim")
        connections = connections or scenario.default_connections
        command = [
            self.wrk,
            f"-t{self.threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "--latency",
            "-s",
            str(LUA_SCRIPT),
        ]
        for header in scenario.extra_headers:
            command += ["-H", header]
        command += [url, "--", str(request_list)]
        if rate:
            command.append(f"{connections / rate * 1000:.3f}")  # mean pause, ms
        environment = dict(os.environ)
        if scenario.needs_full_handshake_shim and self.shim:
            environment["LD_PRELOAD"] = str(self.shim)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, env=environment
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if completed.returncode != 0:
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
        client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return _parse(completed.stdout, client_cpu_s, command)


def _parse(output: str, client_cpu_s: float, command: list[str]) -> LoadResult:
    """Read the JSON line the Lua ``done`` hook prints; wrk's own text rounds latencies."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise RuntimeError(f"wrk printed no {RESULT_MARKER.strip()} line:\n{output}")
    return LoadResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        bytes=data["bytes"],
        errors=data["errors"],
        latency_ms={name: value / 1000 for name, value in data["latency_us"].items()},
        client_cpu_s=client_cpu_s,
        command=command,
        output="\n".join(line for line in output.splitlines() if RESULT_MARKER not in line),
    )
