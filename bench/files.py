"""Benchmark per-device file provisioning against nginx and bare aiohttp in one run.

    python bench/files.py --devices 1000 --duration 10 --workers 1
    python bench/files.py --target https://127.0.0.1:18443 --paths requests.txt \\
        --ca certs/ca.pem --pid 12345 --name dls
    python bench/files.py --target 'https://127.0.0.1:18443/prov/yealink/{file}' \\
        --ca certs/ca.pem --pid 12345 --name dls
    python bench/files.py --write-devices /tmp/fleet      # export the fleet, then exit

Absolute figures move with whatever else runs on a shared machine, so every run measures
the baselines beside the server under test and reports ratios to them (performance notes).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import proctree
import report
import servers
from devicefiles import Device, generate_devices, write_devices
from loadgen import (
    LoadGenerator,
    Request,
    Scenario,
    build_full_handshake_shim,
    write_request_list,
)
from targets import PreflightError, Target, preflight, split_base_url
from tlscert import CertificateFiles, create_certificate
from tools import find_or_install

RESULTS_DIR = Path(__file__).with_name("results")
# Lets connections of a warm-up close before the measured run starts reading CPU time.
SETTLE_S = 0.5
BASELINES = ("nginx", "aiohttp")


@dataclass(frozen=True, slots=True)
class Fleet:
    """The generated files on disk and the request list the baselines use."""

    directory: Path
    request_list: Path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    devices = generate_devices(args.devices, args.seed)
    if args.write_devices:
        export_fleet(devices, args.write_devices)
        print(f"bench: {len(devices)} devices written to {args.write_devices}")
        return 0
    wrk = find_or_install("wrk")
    if wrk is None:
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="dls-bench-"))
    try:
        generator = load_generator(args, wrk, run_dir)
        with contextlib.ExitStack() as stack:
            targets = start_targets(args, devices, run_dir, stack)
            if not targets or not args.scenarios:
                print("bench: nothing to measure", file=sys.stderr)
                return 1
            return measure(args, generator, targets)
    except (PreflightError, RuntimeError, ValueError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep_run_dir:
            print(f"bench: run directory kept at {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--devices", type=int, default=1000, help="per-device files (1000)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--workers", type=int, default=1, help="baseline processes (1)")
    parser.add_argument(
        "--target",
        default="builtin",
        help="'builtin' (baselines only), an https base URL used with --paths, or a URL "
        "template with {mac}, {MAC} or {file} expanded for each generated device",
    )
    parser.add_argument("--paths", type=Path, help="request list for --target (one per line)")
    parser.add_argument("--ca", type=Path, help="CA file that signed the target's certificate")
    parser.add_argument("--pid", type=int, help="target PID whose process tree gets the CPU")
    parser.add_argument("--name", default="target", help="the target's name in the results")
    parser.add_argument(
        "--scenarios",
        default=f"{Scenario.KEEP_ALIVE.value},{Scenario.NEW_CONNECTION.value}",
        help="comma-separated: keep-alive, new-conn (full TLS handshakes), resumed (new "
        "connections resuming the TLS session); default keep-alive,new-conn",
    )
    parser.add_argument("--baselines", default=",".join(BASELINES), help="nginx,aiohttp")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; median (1)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each run (1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--seed", type=int, default=1, help="fleet generator seed (1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-run-dir", action="store_true", help="keep files, logs, certs")
    parser.add_argument(
        "--write-devices",
        type=Path,
        metavar="DIR",
        help="write the fleet (files/, devices.tsv, requests.txt) to DIR and exit",
    )
    args = parser.parse_args(argv)
    args.scenarios = [Scenario(name) for name in args.scenarios.split(",") if name]
    args.baselines = [name for name in args.baselines.split(",") if name]
    if unknown := set(args.baselines) - set(BASELINES):
        parser.error(f"unknown baseline(s): {', '.join(sorted(unknown))}")
    if args.target != "builtin" and not args.ca:
        parser.error("--target needs --ca (the CA that signed its certificate)")
    if args.target != "builtin" and "{" not in args.target and not args.paths:
        parser.error("--target with a base URL needs --paths (or use a URL template)")
    if args.pid and not Path(f"/proc/{args.pid}").exists():
        parser.error(f"--pid {args.pid}: no such process")
    return args


def export_fleet(devices: list[Device], directory: Path) -> Fleet:
    """Files, manifest and the static-layout request list (``/<mac>.cfg`` + User-Agent)."""
    files = write_devices(devices, directory)
    request_list = directory / "requests.txt"
    write_request_list(
        [device_request(device, "/" + device.file_name) for device in devices], request_list
    )
    return Fleet(files, request_list)


def device_request(device: Device, path: str) -> Request:
    # Every target gets the same headers, so request sizes match across servers.
    return Request(path, (("User-Agent", device.user_agent),))


def start_targets(
    args: argparse.Namespace, devices: list[Device], run_dir: Path, stack: contextlib.ExitStack
) -> list[Target]:
    """Start the baselines and describe the external target; stopped when ``stack`` closes."""
    fleet = export_fleet(devices, run_dir / "fleet")
    certificate = create_certificate(run_dir / "tls")
    expected = {f"/{device.file_name}": device.content for device in devices}
    targets = []
    for name in args.baselines:
        started = start_baseline(name, fleet, certificate, args.workers, run_dir)
        if started is None:
            continue
        server, port = started
        stack.callback(server.stop)
        targets.append(
            Target(
                name,
                f"https://127.0.0.1:{port}",
                fleet.request_list,
                certificate.ca,
                server.pid,
                expected,
                baseline=True,
            )
        )
    if args.target != "builtin":
        targets.append(external_target(args, devices, run_dir))
    return targets


def start_baseline(
    name: str, fleet: Fleet, certificate: CertificateFiles, workers: int, run_dir: Path
) -> tuple[servers.ServerProcess, int] | None:
    if name == "aiohttp":
        return servers.start_bare_aiohttp(fleet.directory, certificate, workers, run_dir)
    nginx = find_or_install("nginx")
    if nginx is None:
        print("bench: continuing without the nginx baseline")
        return None
    return servers.start_nginx(nginx, fleet.directory, certificate, workers, run_dir)


def external_target(args: argparse.Namespace, devices: list[Device], run_dir: Path) -> Target:
    """The server someone else started: base URL + request list (+ PID for CPU)."""
    if "{" not in args.target:
        split_base_url(args.target)
        return Target(args.name, args.target.rstrip("/"), args.paths, args.ca, args.pid)
    parts = urlsplit(args.target)
    base_url = f"{parts.scheme}://{parts.netloc}"
    split_base_url(base_url)
    template = args.target[len(base_url) :]
    requests = [
        device_request(
            device,
            template.format(mac=device.mac, MAC=device.mac.upper(), file=device.file_name),
        )
        for device in devices
    ]
    request_list = run_dir / f"{args.name}-requests.txt"
    write_request_list(requests, request_list)
    return Target(args.name, base_url, request_list, args.ca, args.pid)


def load_generator(args: argparse.Namespace, wrk: str, run_dir: Path) -> LoadGenerator:
    """wrk, with the full-handshake shim if a scenario needs it; drops what cannot run."""
    needs_shim = any(scenario.needs_full_handshake_shim for scenario in args.scenarios)
    shim = build_full_handshake_shim(run_dir) if needs_shim else None
    generator = LoadGenerator(wrk, args.threads, shim)
    for scenario in [s for s in args.scenarios if not generator.supports(s)]:
        print(f"bench: skipping {scenario.value}: wrk would resume TLS sessions without the shim")
        args.scenarios.remove(scenario)
    return generator


def measure(args: argparse.Namespace, generator: LoadGenerator, targets: list[Target]) -> int:
    """Preflight every target, run the matrix, print the table and write the JSON."""
    checks = {target.name: preflight(target) for target in targets}
    for target in targets:
        print(f"bench: {target.name} at {target.base_url}: {report.describe(checks[target.name])}")
    started, machine = time.time(), report.environment()
    samples = list(run_matrix(args, generator, targets))
    summary = report.summarise(samples)
    print(report.table(summary, args, [target.name for target in targets]))
    if failed := sorted({name for (name, _), cell in summary.items() if cell.errors}):
        print(f"bench: WARNING: {', '.join(failed)} had errors; their figures count failures")
    path = report.write_json(args, machine, targets, checks, samples, summary, started)
    print(f"bench: results written to {path}")
    return 0


def run_matrix(
    args: argparse.Namespace, generator: LoadGenerator, targets: list[Target]
) -> Iterator[report.Sample]:
    """Interleave targets, rotating their order per repeat, so drift hits them alike."""
    for repeat in range(args.repeat):
        first = repeat % len(targets)
        for scenario in args.scenarios:
            for target in targets[first:] + targets[:first]:
                if args.warmup:
                    generator.run(target.base_url, target.request_list, scenario, args.warmup)
                    time.sleep(SETTLE_S)
                sample = run_one(args, generator, target, scenario, repeat)
                print(f"bench: {report.describe_sample(sample)}", flush=True)
                yield sample


def run_one(
    args: argparse.Namespace,
    generator: LoadGenerator,
    target: Target,
    scenario: Scenario,
    repeat: int,
) -> report.Sample:
    """One measured wrk run, with the server's and the whole machine's CPU around it."""
    before = proctree.snapshot(target.pid) if target.pid else None
    machine_before = proctree.machine_busy_seconds()
    load = generator.run(target.base_url, target.request_list, scenario, args.duration)
    machine_cpu_s = proctree.machine_busy_seconds() - machine_before
    cpu = None
    if target.pid and before is not None:
        after = proctree.snapshot(target.pid)
        if lost := after.lost_processes(before):
            print(
                f"bench: {target.name}: processes {lost} exited during the run; "
                "their CPU time is missing",
                file=sys.stderr,
            )
        cpu = report.ServerCpu(after.seconds_since(before), after.per_process_seconds_since(before))
    return report.Sample(target.name, scenario, repeat, load, cpu, machine_cpu_s)


if __name__ == "__main__":
    sys.exit(main())
