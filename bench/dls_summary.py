"""Markdown tables from ``dls_files.py`` results: the figures BENCHMARKS.md quotes.

    python bench/dls_summary.py bench/results/dls-*.json

For each configuration (database, phones, workers) the newest result file wins. Every
figure is a median over the repeats of one run; ratios are taken inside one run (the
machine is shared, so absolute figures move between runs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KEEPALIVE_MIN_VS_AIOHTTP = 0.25
NEWCONN_MIN_VS_NGINX = 0.90
P99_MAX_MS = 20.0
SCALE_MIN = 0.90

Cells = dict[tuple[str, str], dict[str, Any]]


def load(
    paths: list[Path],
) -> tuple[
    dict[tuple[str, int, int], dict[str, Any]], dict[tuple[str, int, int, float], dict[str, Any]]
]:
    """Runs to saturation by configuration, and runs at an offered rate (``--rate``) by
    configuration and rate."""
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    rated: dict[tuple[str, int, int, float], dict[str, Any]] = {}
    for path in sorted(paths):  # names start with the UTC time: later files win
        document = json.loads(path.read_text())
        settings = document["settings"]
        key = (settings["database"], settings["devices"], settings["workers"])
        if settings.get("rate") is None:
            runs[key] = document
        else:
            rated[(*key, settings["rate"])] = document
    return runs, rated


def cells(document: dict[str, Any]) -> Cells:
    found: Cells = {(c["target"], c["scenario"]): c for c in document["summary"]}
    for entry in document.get("db_cpu_ms_per_request", []):
        found[(entry["target"], entry["scenario"])]["db_cpu_ms"] = entry["median"]
    return found


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _config(key: tuple[str, int, int]) -> str:
    database, devices, workers = key
    return f"{'SQLite' if database == 'sqlite' else 'PostgreSQL'}, {devices:,}, {workers}"


def _measured(c: dict[tuple[str, str], dict[str, Any]], scenario: str) -> bool:
    """Whether a run measured the scenario on dls and both baselines (``--scenarios`` and
    ``--baselines`` may leave some out): a table row needs all three."""
    return all((name, scenario) in c for name in ("dls", "aiohttp", "nginx"))


def keepalive_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    rows = [
        "| database, phones, workers | dls req/s | p50 / p99 ms | dls CPU ms/req (+ PG) "
        "| bare aiohttp req/s | CPU ms/req | nginx req/s | CPU ms/req "
        f"| dls ÷ aiohttp req/s (≥ {KEEPALIVE_MIN_VS_AIOHTTP:.2f}) | aiohttp ÷ dls CPU/req "
        f"| p99 < {P99_MAX_MS:g} ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for key, document in sorted(runs.items()):
        c = cells(document)
        if not _measured(c, "keep-alive"):
            continue
        dls, aio, ngx = (
            c[("dls", "keep-alive")],
            c[("aiohttp", "keep-alive")],
            c[("nginx", "keep-alive")],
        )
        ratio = dls["requests_per_second"] / aio["requests_per_second"]
        db = f" + {dls['db_cpu_ms']:.2f}" if "db_cpu_ms" in dls else ""
        rows.append(
            f"| {_config(key)} | {_n(dls['requests_per_second'])} "
            f"| {dls['p50_ms']:.0f} / {dls['p99_ms']:.0f} | {dls['cpu_ms_per_request']:.2f}{db} "
            f"| {_n(aio['requests_per_second'])} | {aio['cpu_ms_per_request']:.3f} "
            f"| {_n(ngx['requests_per_second'])} | {ngx['cpu_ms_per_request']:.3f} "
            f"| {ratio:.3f} {_mark(ratio >= KEEPALIVE_MIN_VS_AIOHTTP)} "
            f"| {aio['cpu_ms_per_request'] / dls['cpu_ms_per_request']:.3f} "
            f"| {_mark(dls['p99_ms'] < P99_MAX_MS)} |"
        )
    return "\n".join(rows)


def newconn_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    rows = [
        "| database, phones, workers | dls req/s | p50 / p99 ms | dls CPU ms/req (+ PG) "
        "| nginx req/s | CPU ms/req | bare aiohttp req/s | CPU ms/req "
        f"| nginx ÷ dls CPU/req (≥ {NEWCONN_MIN_VS_NGINX:.2f}) | dls ÷ nginx req/s "
        f"| p99 < {P99_MAX_MS:g} ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for key, document in sorted(runs.items()):
        c = cells(document)
        if not _measured(c, "new-conn"):
            continue
        dls, aio, ngx = c[("dls", "new-conn")], c[("aiohttp", "new-conn")], c[("nginx", "new-conn")]
        efficiency = ngx["cpu_ms_per_request"] / dls["cpu_ms_per_request"]
        if "db_cpu_ms" in dls:
            efficiency = ngx["cpu_ms_per_request"] / (dls["cpu_ms_per_request"] + dls["db_cpu_ms"])
        db = f" + {dls['db_cpu_ms']:.2f}" if "db_cpu_ms" in dls else ""
        rows.append(
            f"| {_config(key)} | {_n(dls['requests_per_second'])} "
            f"| {dls['p50_ms']:.0f} / {dls['p99_ms']:.0f} | {dls['cpu_ms_per_request']:.2f}{db} "
            f"| {_n(ngx['requests_per_second'])} | {ngx['cpu_ms_per_request']:.3f} "
            f"| {_n(aio['requests_per_second'])} | {aio['cpu_ms_per_request']:.3f} "
            f"| {efficiency:.3f} {_mark(efficiency >= NEWCONN_MIN_VS_NGINX)} "
            f"| {dls['requests_per_second'] / ngx['requests_per_second']:.2f} "
            f"| {_mark(dls['p99_ms'] < P99_MAX_MS)} |"
        )
    return "\n".join(rows)


def _latency(cell: dict[str, Any] | None) -> str:
    return "-" if cell is None else f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"


def latency_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    """The three servers' latency under the same load generator: what p99 a closed loop
    of wrk connections gives even a server doing nothing but send the bytes."""
    rows = [
        "| database, phones, workers | scenario | dls p50 / p99 ms "
        "| bare aiohttp p50 / p99 ms | nginx p50 / p99 ms | wrk cores (dls run) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, document in sorted(runs.items()):
        c = cells(document)
        for scenario in ("keep-alive", "new-conn"):
            shown = [_latency(c.get((name, scenario))) for name in ("dls", "aiohttp", "nginx")]
            wrk = c.get(("dls", scenario), {}).get("client_cores")
            rows.append(
                f"| {_config(key)} | {scenario} | "
                + " | ".join(shown)
                + f" | {'-' if wrk is None else f'{wrk:.2f}'} |"
            )
    return "\n".join(rows)


def _variants(document: dict[str, Any], scenario: str) -> str:
    """The ``dls+NAME`` targets of a run (``--variant``), for same-run comparisons."""
    shown = [
        f"{c['target']}: {_latency(c)}, {c['cpu_ms_per_request']:.2f}"
        for c in document["summary"]
        if c["target"].startswith("dls+") and c["scenario"] == scenario
    ]
    return "; ".join(shown) or "-"


def rated_table(runs: dict[tuple[str, int, int, float], dict[str, Any]]) -> str:
    """Keep-alive latency when the load is below what dls can serve: every server gets
    the same offered requests a second, so only latency and CPU tell them apart."""
    rows = [
        "| database, phones, workers | offered req/s | served req/s: dls, aiohttp, nginx "
        f"| dls p50 / p99 ms (p99 < {P99_MAX_MS:g}) | bare aiohttp p50 / p99 ms "
        "| nginx p50 / p99 ms | dls CPU ms/req | dls server cores "
        "| other dls (--variant): p50 / p99 ms, CPU ms/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (database, devices, workers, rate), document in sorted(runs.items()):
        c = cells(document)
        found = [c.get((name, "keep-alive")) for name in ("dls", "aiohttp", "nginx")]
        dls = found[0]
        if dls is None:
            continue
        served = ", ".join("-" if x is None else _n(x["requests_per_second"]) for x in found)
        latency = [_latency(x) for x in found]
        rows.append(
            f"| {_config((database, devices, workers))} | {_n(rate)} | {served} "
            f"| {latency[0]} {_mark(dls['p99_ms'] < P99_MAX_MS)} | {latency[1]} | {latency[2]} "
            f"| {dls['cpu_ms_per_request']:.2f} | {dls['server_cores']:.2f} "
            f"| {_variants(document, 'keep-alive')} |"
        )
    return "\n".join(rows)


def variants_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    rows = [
        "| database, phones, workers | scenario | dls (Digest) req/s, CPU ms/req "
        "| dls-legacy (MAC only) req/s, CPU ms/req | dls-hot (10,000 phones) req/s, CPU ms/req |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for key, document in sorted(runs.items()):
        c = cells(document)
        for scenario in ("keep-alive", "new-conn"):
            shown = []
            for name in ("dls", "dls-legacy", "dls-hot"):
                cell = c.get((name, scenario))
                shown.append(
                    "-"
                    if cell is None
                    else f"{_n(cell['requests_per_second'])}, {cell['cpu_ms_per_request']:.2f}"
                )
            rows.append(f"| {_config(key)} | {scenario} | " + " | ".join(shown) + " |")
    return "\n".join(rows)


def scale_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    rows = [
        "| database, workers | scenario | dls req/s at 1,000 | at 100,000 | req/s ratio "
        "| CPU ms/req at 1,000 → 100,000 "
        f"| requests per CPU second, ratio (≥ {SCALE_MIN:.2f}) "
        "| ratio of (dls ÷ aiohttp req/s) | dls-hot at 100,000: CPU ms/req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    pairs = sorted({(database, workers) for database, _, workers in runs})
    for database, workers in pairs:
        small, large = runs.get((database, 1000, workers)), runs.get((database, 100000, workers))
        if small is None or large is None:
            continue
        cs, cl = cells(small), cells(large)
        for scenario in ("keep-alive", "new-conn"):
            a, b = cs[("dls", scenario)], cl[("dls", scenario)]
            ratio = b["requests_per_second"] / a["requests_per_second"]
            norm_a = a["requests_per_second"] / cs[("aiohttp", scenario)]["requests_per_second"]
            norm_b = b["requests_per_second"] / cl[("aiohttp", scenario)]["requests_per_second"]
            hot = cl.get(("dls-hot", scenario))
            capacity = a["cpu_ms_per_request"] / b["cpu_ms_per_request"]
            if "db_cpu_ms" in a and "db_cpu_ms" in b:
                capacity = (a["cpu_ms_per_request"] + a["db_cpu_ms"]) / (
                    b["cpu_ms_per_request"] + b["db_cpu_ms"]
                )
            rows.append(
                f"| {'SQLite' if database == 'sqlite' else 'PostgreSQL'}, {workers} | {scenario} "
                f"| {_n(a['requests_per_second'])} | {_n(b['requests_per_second'])} "
                f"| {ratio:.2f} "
                f"| {a['cpu_ms_per_request']:.2f} → {b['cpu_ms_per_request']:.2f} "
                f"| {capacity:.2f} {_mark(capacity >= SCALE_MIN)} "
                f"| {norm_b / norm_a:.2f} "
                f"| {hot['cpu_ms_per_request'] if hot else '-':.2f} |"
            )
    return "\n".join(rows)


def noise_table(runs: dict[tuple[str, int, int], dict[str, Any]]) -> str:
    rows = [
        "| database, phones, workers | started (UTC) | load average before | mean body B "
        "| seed s | collect s (files/s) | 'other' cores during dls runs (keep-alive / new-conn) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, document in sorted(runs.items()):
        timings = document.get("timings", {})
        others = [
            c["other_cores"]
            for scenario in ("keep-alive", "new-conn")
            for c in document["summary"]
            if c["target"] == "dls"
            and c["scenario"] == scenario
            and c.get("other_cores") is not None
        ]
        load = ", ".join(f"{v:.1f}" for v in document["environment"]["load_average"])
        collect = timings.get("collect_s")
        per_s = key[1] / collect if collect else None
        rows.append(
            f"| {_config(key)} | {document['started'][:19]} | {load} "
            f"| {_n(document['settings'].get('mean_body_bytes'))} "
            f"| {_n(timings.get('seed_s'), 1)} | {_n(collect, 0)} ({_n(per_s)}) "
            f"| {' / '.join(f'{value:.2f}' for value in others)} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    paths = [Path(arg) for arg in argv]
    runs, rated = load(paths)
    if not runs and not rated:
        print("no results given", file=sys.stderr)
        return 1
    tables = []
    if rated:
        tables.append(("Keep-alive at an offered rate, 64 connections", rated_table(rated)))
    if runs:
        tables += [
            ("Keep-alive, 64 connections", keepalive_table(runs)),
            ("New TLS connection per fetch (full handshake), 32 connections", newconn_table(runs)),
            ("Latency of the three servers under the same load", latency_table(runs)),
            ("Trust modes and the render cache", variants_table(runs)),
            ("100,000 phones against 1,000", scale_table(runs)),
            ("Runs", noise_table(runs)),
        ]
    for title, table in tables:
        print(f"### {title}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
