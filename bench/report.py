"""Samples, their medians, the printed table and the JSON results file.

Ratios to the baselines are the figures meant for comparison: absolute req/s on a shared
2-core machine move from run to run, ratios measured in the same run much less.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import ssl
import statistics
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from loadgen import LoadResult, Scenario, read_request_list
from targets import PreflightInfo, Target

BASELINE_NAMES = ("nginx", "aiohttp")
LEGEND = """\
CPU ms/req: server utime+stime (whole process tree) per request; compare servers by it,
  not by req/s, when wrk cores is near 1.0 (one wrk thread saturates on new connections).
srv/wrk/other cores: CPU used during the run by the server, by wrk, and by everything else
  on the machine; high 'other' means another job competed and the figures are noisy.
÷baseline: this target's value divided by the baseline's in the same run."""


@dataclass(frozen=True, slots=True)
class ServerCpu:
    seconds: float
    per_process: dict[int, float]


@dataclass(frozen=True, slots=True)
class Sample:
    """One wrk run against one target, with the server CPU it cost if the PID is known."""

    target: str
    scenario: Scenario
    repeat: int
    load: LoadResult
    cpu: ServerCpu | None
    machine_cpu_s: float

    @property
    def other_cpu_s(self) -> float | None:
        """Machine CPU neither the server nor wrk used: other work competing for the cores."""
        if self.cpu is None:
            return None
        return max(0.0, self.machine_cpu_s - self.cpu.seconds - self.load.client_cpu_s)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.cpu is None or not self.load.requests:
            return None
        return self.cpu.seconds * 1000 / self.load.requests

    @property
    def bytes_per_response(self) -> float:
        # Headers included; shows at a glance whether two servers sent comparable responses.
        return self.load.bytes / self.load.requests if self.load.requests else 0.0


@dataclass(frozen=True, slots=True)
class Cell:
    """Medians over the repeats of one (target, scenario)."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None
    server_cores: float | None
    client_cores: float
    other_cores: float | None
    errors: int
    bytes_per_response: float
    runs: int


def summarise(samples: list[Sample]) -> dict[tuple[str, Scenario], Cell]:
    groups: dict[tuple[str, Scenario], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.target, sample.scenario), []).append(sample)
    return {key: _cell(group) for key, group in groups.items()}


def _cell(samples: list[Sample]) -> Cell:
    cpu = [s.cpu_ms_per_request for s in samples if s.cpu_ms_per_request is not None]
    cores = [s.cpu.seconds / s.load.duration_s for s in samples if s.cpu and s.load.duration_s]
    return Cell(
        requests_per_second=statistics.median(s.load.requests_per_second for s in samples),
        p50_ms=statistics.median(s.load.latency_ms["p50"] for s in samples),
        p99_ms=statistics.median(s.load.latency_ms["p99"] for s in samples),
        cpu_ms_per_request=_median_or_none(cpu),
        server_cores=_median_or_none(cores),
        client_cores=statistics.median(
            s.load.client_cpu_s / s.load.duration_s for s in samples if s.load.duration_s
        ),
        other_cores=_median_or_none(
            [s.other_cpu_s / s.load.duration_s for s in samples if s.other_cpu_s is not None]
        ),
        errors=sum(s.load.error_count for s in samples),
        bytes_per_response=statistics.median(s.bytes_per_response for s in samples),
        runs=len(samples),
    )


def _median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratios(
    summary: dict[tuple[str, Scenario], Cell], target: str, scenario: Scenario
) -> dict[str, float | None]:
    """req/s and CPU per request of ``target`` divided by each baseline's, same scenario."""
    cell, result = summary[(target, scenario)], {}
    for baseline in BASELINE_NAMES:
        reference = summary.get((baseline, scenario))
        if reference is None:
            continue
        result[f"rps_vs_{baseline}"] = _divide(
            cell.requests_per_second, reference.requests_per_second
        )
        result[f"cpu_vs_{baseline}"] = _divide(
            cell.cpu_ms_per_request, reference.cpu_ms_per_request
        )
    return result


def _divide(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def table(
    summary: dict[tuple[str, Scenario], Cell], args: argparse.Namespace, names: list[str]
) -> str:
    """One block per scenario; a ratio column per baseline present in the run."""
    baselines = [name for name in BASELINE_NAMES if name in names]
    header = [
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU ms/req",
        "srv cores",
        "wrk cores",
        "other cores",
        "errors",
        "B/resp",
    ]
    for baseline in baselines:
        header += [f"req/s ÷{baseline}", f"CPU ÷{baseline}"]
    blocks = []
    for scenario in args.scenarios:
        rows = [header]
        for name in names:
            cell = summary[(name, scenario)]
            found = ratios(summary, name, scenario)
            rows.append(
                [
                    name,
                    f"{cell.requests_per_second:,.0f}",
                    f"{cell.p50_ms:.2f}",
                    f"{cell.p99_ms:.2f}",
                    _number(cell.cpu_ms_per_request, 3),
                    _number(cell.server_cores, 2),
                    f"{cell.client_cores:.2f}",
                    _number(cell.other_cores, 2),
                    str(cell.errors),
                    f"{cell.bytes_per_response:,.0f}",
                ]
            )
            for baseline in baselines:
                rows[-1] += [
                    _number(found.get(f"rps_vs_{baseline}"), 2),
                    _number(found.get(f"cpu_vs_{baseline}"), 2),
                ]
        connections = scenario.default_connections
        title = (
            f"{scenario.value}: {connections} connections, {args.workers} worker(s), "
            f"{args.duration} s x {args.repeat} (median), wrk -t{args.threads}"
        )
        blocks.append(title + "\n" + _format_rows(rows))
    return "\n\n".join([*blocks, LEGEND])


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format_rows(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [text.rjust(width) for text, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def describe(check: PreflightInfo) -> str:
    return (
        f"{check.tls_version} {check.cipher}, Server: {check.server or '-'}, "
        f"~{check.mean_body_bytes:,.0f} B bodies"
    )


def describe_sample(sample: Sample) -> str:
    cpu = sample.cpu_ms_per_request
    return (
        f"{sample.scenario.value:10} {sample.target:10} run {sample.repeat + 1}: "
        f"{sample.load.requests_per_second:,.0f} req/s, "
        f"p99 {sample.load.latency_ms['p99']:.2f} ms, "
        f"CPU {_number(cpu, 3)} ms/req, errors {sample.load.error_count}"
    )


def write_json(
    args: argparse.Namespace,
    machine: dict[str, object],
    targets: list[Target],
    checks: dict[str, PreflightInfo],
    samples: list[Sample],
    summary: dict[tuple[str, Scenario], Cell],
    started: float,
) -> Path:
    """bench/results/files-<UTC time>.json: settings, machine, every sample and medians."""
    stamp = datetime.datetime.fromtimestamp(started, datetime.UTC)
    document = {
        "benchmark": "files",
        "started": stamp.isoformat(),
        "settings": {
            "devices": args.devices,
            "duration_s": args.duration,
            "workers": args.workers,
            "repeat": args.repeat,
            "warmup_s": args.warmup,
            "wrk_threads": args.threads,
            "seed": args.seed,
            "scenarios": [s.value for s in args.scenarios],
        },
        "environment": {**machine, "load_average_after": os.getloadavg()},
        "targets": [
            {
                "name": t.name,
                "base_url": t.base_url,
                "requests_in_list": len(read_request_list(t.request_list)),
                "pid": t.pid,
                "baseline": t.baseline,
                "preflight": asdict(checks[t.name]),
            }
            for t in targets
        ],
        "summary": [
            {
                "target": name,
                "scenario": scenario.value,
                **asdict(cell),
                **ratios(summary, name, scenario),
            }
            for (name, scenario), cell in summary.items()
        ],
        "samples": [_sample_json(sample) for sample in samples],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path: Path = args.results_dir / f"files-{stamp:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _sample_json(sample: Sample) -> dict[str, object]:
    load = sample.load
    return {
        "target": sample.target,
        "scenario": sample.scenario.value,
        "repeat": sample.repeat,
        "requests": load.requests,
        "duration_s": load.duration_s,
        "bytes": load.bytes,
        "requests_per_second": load.requests_per_second,
        "latency_ms": load.latency_ms,
        "errors": load.errors,
        "client_cpu_s": load.client_cpu_s,
        "server_cpu_s": sample.cpu.seconds if sample.cpu else None,
        "server_cpu_per_process_s": sample.cpu.per_process if sample.cpu else None,
        "cpu_ms_per_request": sample.cpu_ms_per_request,
        "machine_cpu_s": sample.machine_cpu_s,
        "wrk_output": load.output,
        "wrk_command": load.command,
    }


def environment() -> dict[str, object]:
    """What the figures depend on; the load average shows how busy the shared machine was."""
    versions: dict[str, str | None] = {}
    for package in ("aiohttp", "uvloop", "cryptography"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "nginx": _tool_version(["nginx", "-v"]),
        "wrk": _tool_version(["wrk", "-v"]),
        **versions,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _tool_version(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return None
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else None
