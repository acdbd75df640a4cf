"""Benchmark a real ``dls serve`` provisioning N phones, against nginx and bare aiohttp.

    python bench/dls_files.py --devices 1000 --workers 1
    python bench/dls_files.py --devices 100000 --workers 2 --database postgres --hot 10000
    python bench/dls_files.py --help

One run, end to end:

1. ``dls init`` in a fresh directory (certificates, secret key, schema); with
   ``--database postgres`` first a database of its own (``.ci/pgdb.py create``), dropped
   at the end.
2. Seed N phones with direct SQLAlchemy bulk inserts (``dls_seed.py``): one tenant with
   a registrar, one user per phone with line 1 (SIP user and password), Digest passwords
   per device, secrets encrypted with dls's own secret box.
3. ``dls serve --workers W --no-mdns``, defaults otherwise (access log on).
4. Collect every phone's ``<mac>.cfg`` once through dls with HTTP Digest (a nonce from a
   401 challenge), check each contains that phone's SIP user, password and registrar, and
   write them to disk: nginx and bare aiohttp (W processes each) serve those same bytes.
5. For each repeat, scenario (keep-alive: 64 connections; new-conn: 32 connections, a full
   TLS handshake per request) and target, in rotating order: refresh the Digest nonce
   from a new 401 challenge, write the request list with a precomputed ``Authorization``
   header per path (wrk cannot answer a challenge), preflight a sample (200, the exact
   bytes), warm up, and measure req/s, latency and server CPU per request from ``/proc``.
   Each run starts where the previous one of that target stopped, so a run at 100,000
   phones keeps cycling through the fleet instead of replaying its first few thousand.
   With ``--rate R`` (keep-alive only) the 64 connections pause between requests so
   that every server is offered about R requests a second: latency below saturation,
   where the closed loop's queueing (64 in flight) does not set the tail.

Targets: ``dls`` (Digest), ``dls-legacy`` (the tenant switched to legacy MAC-only trust
for that run; ``--no-legacy`` drops it), ``dls-hot`` (``--hot K``: only the first K phones,
a working set the render cache holds at any size), ``nginx``, ``aiohttp``.
With PostgreSQL the CPU of the database's backends serving dls (found by the database name
in their process titles) is reported separately as ``db CPU ms/req``.

Results: the harness's table, a target check, and JSON in ``bench/results/dls-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import perf_libraries
import proctree
import pyspy
import report
import servers
from dls_seed import Phone, SeededFleet, seed, set_legacy_mac_only
from dls_server import DlsInstance, init, new_instance, sibling, start_dls
from loadgen import LoadGenerator, Request, Scenario, build_full_handshake_shim
from targets import PreflightError, PreflightInfo, Target, preflight
from tlscert import CertificateFiles
from tools import find_or_install

from dls.secretbox import SecretBox

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).with_name("results")
PGDB_SCRIPT = ROOT / ".ci" / "pgdb.py"
LAYERS_DIR = Path(__file__).with_name("layers")
# Layers whose handler answers a fixed body (bench/layers/sitecustomize.py); "answer"
# sends the rendered file as dls does.
FIXED_BODY_LAYERS = ("framework", "detect", "facts", "auth")
LAYERS = (*FIXED_BODY_LAYERS, "answer")
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DATABASE = "dls_bench"
SETTLE_S = 0.5
NONCE_REFRESH_S = 200  # dls nonces live 300 s; refresh well before
COLLECT_CONNECTIONS = 16
REALM = "dls"
CNONCE = "0a4f113b"
_NONCE = re.compile(r'algorithm=MD5, nonce="([^"]+)"')

# Targets to compare against (the acceptance figures).
KEEPALIVE_MIN_VS_AIOHTTP = 0.25
NEWCONN_MIN_VS_NGINX = 0.90
P99_MAX_MS = 20.0


# --- Digest ------------------------------------------------------------------------------


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 7616 MD5, what phones use


def authorization(phone: Phone, nonce: str, method: str = "GET") -> str:
    """The header a phone sends after a challenge: MD5, qop=auth, nc 1 (RFC 7616 §3.4)."""
    nc = "00000001"
    ha1 = _md5(f"{phone.mac}:{REALM}:{phone.digest_password}")
    ha2 = _md5(f"{method}:{phone.path}")
    response = _md5(f"{ha1}:{nonce}:{nc}:{CNONCE}:auth:{ha2}")
    return (
        f'Digest username="{phone.mac}", realm="{REALM}", nonce="{nonce}", '
        f'uri="{phone.path}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{CNONCE}", '
        f'response="{response}"'
    )


def challenge_nonce(instance: DlsInstance, phone: Phone) -> str:
    """A fresh nonce: the MD5 challenge of a 401 to an unauthenticated fetch."""
    context = ssl.create_default_context(cafile=str(instance.ca_file))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", instance.device_port, context=context, timeout=10
    )
    try:
        connection.request("GET", phone.path, headers={"User-Agent": phone.user_agent})
        response = connection.getresponse()
        response.read()
        if response.status != 401:
            raise PreflightError(f"dls: unauthenticated GET answered {response.status}, not 401")
        for value in response.headers.get_all("WWW-Authenticate") or []:
            if found := _NONCE.search(value):
                return found.group(1)
        raise PreflightError("dls: 401 without an MD5 Digest challenge")
    finally:
        connection.close()


def nonce_age_s(nonce: str) -> float:
    stamp = base64.b64decode(nonce).decode().split(":")[0]
    return time.time() - int(stamp)


# --- targets -------------------------------------------------------------------------------


@dataclass(slots=True)
class Cursor:
    """Where the next run starts in the fleet; dls and dls-legacy share one, so a run at
    100,000 phones never replays what the other target's last run just rendered."""

    offset: int = 0


@dataclass(slots=True)
class BenchTarget:
    """A harness target plus how to (re)write its request list before each run."""

    target: Target
    phones: list[Phone]
    path_of: Callable[[Phone], str]
    digest: bool  # send Authorization headers (dls: needed; baselines: same bytes on the wire)
    legacy: bool | None = None  # dls only: the tenant's legacy flag for this target's runs
    cursor: Cursor = field(default_factory=Cursor)
    nonce: str = ""

    @property
    def name(self) -> str:
        return self.target.name

    def write_requests(self, nonce: str) -> None:
        """The request list, starting where the previous run stopped, with ``nonce``."""
        self.nonce = nonce
        start = self.cursor.offset % len(self.phones)
        ordered = self.phones[start:] + self.phones[:start]
        lines = []
        for phone in ordered:
            request = Request(self.path_of(phone), self._headers(phone, nonce))
            lines.append(request.to_line())
        self.target.request_list.write_text("\n".join(lines) + "\n")

    def _headers(self, phone: Phone, nonce: str) -> tuple[tuple[str, str], ...]:
        headers = [("User-Agent", phone.user_agent)]
        if self.digest:
            headers.append(("Authorization", authorization(phone, nonce)))
        return tuple(headers)

    def advance(self, requests: int, connections: int) -> None:
        self.cursor.offset += requests + connections


@dataclass(slots=True)
class Extra:
    """What the harness's Sample does not hold: database CPU, nonce age."""

    db_cpu_s: float | None = None
    nonce_age_end_s: float | None = None


@dataclass(slots=True)
class Run:
    args: argparse.Namespace
    instance: DlsInstance
    fleet: SeededFleet
    bodies: dict[str, bytes]
    targets: list[BenchTarget] = field(default_factory=list)
    legacy_state: bool = False
    last_nonce: str = ""
    timings: dict[str, float] = field(default_factory=dict)


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Background jobs of a non-interactive shell ignore SIGINT; make SIGTERM unwind the
    # ExitStack (stop dls and the baselines, drop the database) instead of dying on the spot.
    signal.signal(signal.SIGTERM, _terminate)
    wrk = find_or_install("wrk")
    if wrk is None:
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="dls-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            return bench(args, wrk, run_dir, stack)
    except (PreflightError, RuntimeError, ValueError) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep_run_dir:
            print(f"bench: run directory kept at {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def dls_source() -> dict[str, str]:
    """Which dls the run measured: its directory and a hash of its code and profiles."""
    import dls

    package = Path(dls.__file__).resolve().parent
    digest = hashlib.sha256()
    for root in (package, package.parent / "profiles", package.parent / "firmware_catalog"):
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".toml", ".ini", ".csv", ".mako") and path.is_file():
                digest.update(str(path.relative_to(package.parent)).encode() + b"\0")
                digest.update(path.read_bytes())
    return {"path": str(package.parent), "sha256": digest.hexdigest()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--devices", type=int, default=1000, help="phones to seed (1000)")
    parser.add_argument("--workers", type=int, default=1, help="dls and baseline processes")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-database", default=DEFAULT_PG_DATABASE)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; median (3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each run (1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="keep-alive only: offer about this many requests a second (each connection "
        "pausing a random time between requests) instead of loading to saturation; for "
        "latency at a given load",
    )
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (1)")
    parser.add_argument(
        "--scenarios",
        default=f"{Scenario.KEEP_ALIVE.value},{Scenario.NEW_CONNECTION.value}",
        help="comma-separated: keep-alive, new-conn, resumed",
    )
    parser.add_argument("--baselines", default="nginx,aiohttp")
    parser.add_argument("--no-legacy", action="store_true", help="skip the dls-legacy target")
    parser.add_argument("--hot", type=int, default=0, help="add dls-hot: the first K phones")
    parser.add_argument(
        "--dls-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for dls serve, e.g. DLS_ACCESS_LOG=false",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[;KEY=VALUE]",
        help="another dls on the same database with this environment, measured as "
        "'dls+NAME' (e.g. 'nolog:DLS_ACCESS_LOG=false')",
    )
    parser.add_argument(
        "--layers",
        default="",
        metavar="LAYER[,LAYER]",
        help="comma-separated: framework, detect, facts, auth, answer; per layer a 'dls+LAYER' "
        "variant whose poll handler stops there (bench/layers/sitecustomize.py)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="dls",
        default=None,
        metavar="TARGET",
        help="after the matrix, one extra run per scenario of TARGET (default 'dls', or a "
        "variant such as 'dls+framework') under py-spy (not counted)",
    )
    parser.add_argument(
        "--perf",
        nargs="?",
        const="dls,aiohttp",
        default=None,
        metavar="TARGET[,TARGET]",
        help="after the matrix, one extra run per scenario of each TARGET (default "
        "'dls,aiohttp') under Linux perf (not counted): CPU ms per request by library",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-run-dir", action="store_true")
    parser.add_argument("--label", default="", help="free text stored with the results")
    args = parser.parse_args(argv)
    args.scenarios = [Scenario(name) for name in args.scenarios.split(",") if name]
    args.baselines = [name for name in args.baselines.split(",") if name]
    args.layers = [name for name in args.layers.split(",") if name]
    if unknown := set(args.layers) - set(LAYERS):
        parser.error(f"--layers: unknown {', '.join(sorted(unknown))}; one of {', '.join(LAYERS)}")
    args.variant += [layer_variant(name) for name in args.layers]
    if args.duration + args.warmup + 30 > 300:
        parser.error("a run must finish within the 300 s nonce lifetime")
    if args.rate is not None and (args.rate <= 0 or args.scenarios != [Scenario.KEEP_ALIVE]):
        # With new connections wrk would pause between the handshake and the request.
        parser.error("--rate takes a positive rate and --scenarios keep-alive")
    return args


def bench(args: argparse.Namespace, wrk: str, run_dir: Path, stack: contextlib.ExitStack) -> int:
    timings: dict[str, float] = {}
    database_url = ""
    if args.database == "postgres":
        database_url = create_pg_database(args)
        stack.callback(drop_pg_database, args)
    instance = new_instance(run_dir / "dls", database_url)
    started = time.monotonic()
    init(instance)
    timings["init_s"] = time.monotonic() - started
    box = SecretBox(base64.b64decode((instance.certs / "secret.key").read_bytes().strip()))
    started = time.monotonic()
    fleet = asyncio.run(seed(instance.effective_database_url, box, args.devices, args.seed))
    timings["seed_s"] = time.monotonic() - started
    print(f"bench: seeded {args.devices:,} phones in {timings['seed_s']:.1f} s", flush=True)
    write_manifest(fleet, run_dir / "fleet.tsv")

    extra_env = dict(item.split("=", 1) for item in args.dls_env)
    dls = start_dls(instance, args.workers, extra_env)
    stack.callback(dls.stop)
    print(f"bench: dls serve --workers {args.workers} up, pid {dls.pid}", flush=True)

    files_dir = run_dir / "files"
    started = time.monotonic()
    bodies = asyncio.run(collect(instance, fleet.phones))
    files_dir.mkdir()
    for name, body in bodies.items():
        (files_dir / name).write_bytes(body)
    timings["collect_s"] = time.monotonic() - started
    print(
        f"bench: collected and checked {len(bodies):,} files through dls in "
        f"{timings['collect_s']:.1f} s ({len(bodies) / timings['collect_s']:,.0f}/s, "
        f"{COLLECT_CONNECTIONS} keep-alive connections, cold render cache), "
        f"mean {statistics.mean(len(b) for b in bodies.values()):,.0f} B",
        flush=True,
    )
    run = Run(args, instance, fleet, bodies, timings=timings)
    mean_body = round(statistics.mean(len(b) for b in bodies.values()))
    variants = start_variants(args, instance, extra_env, stack, mean_body)
    for name, other, _ in variants:
        if fixed_body(name):
            continue  # its handler renders nothing
        # Its render cache warm like dls's: else its first run renders the whole fleet.
        asyncio.run(collect(other, fleet.phones))
        print(f"bench: collected the files through {name}", flush=True)
    run.targets = build_targets(args, run, run_dir, files_dir, dls.pid, stack, variants)
    generator = load_generator(args, wrk, run_dir)
    return measure(run, generator)


def layer_variant(layer: str) -> str:
    """The --variant spec of a server whose poll handler stops after ``layer``: the
    layers hook joins the PYTHONPATH dls runs from (a snapshot, with dls_matrix.sh)."""
    path = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    path.append(str(LAYERS_DIR))
    return f"{layer}:PYTHONPATH={os.pathsep.join(path)};DLS_BENCH_LAYER={layer}"


def fixed_body(variant: str) -> bool:
    """Whether the variant is a layer whose handler answers a fixed body, not the file."""
    return variant.removeprefix("dls+") in FIXED_BODY_LAYERS


def start_variants(
    args: argparse.Namespace,
    instance: DlsInstance,
    extra_env: dict[str, str],
    stack: contextlib.ExitStack,
    mean_body: int,
) -> list[tuple[str, DlsInstance, int]]:
    """Servers for --variant: the same dls and database, with the variant's environment;
    a layer's fixed body is as long as the fleet's files on average."""
    started = []
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        env = dict(extra_env)
        env.update(item.split("=", 1) for item in assignments.split(";") if item)
        if fixed_body(name):
            env["DLS_BENCH_BODY_BYTES"] = str(mean_body)
        other = sibling(instance)
        server = start_dls(other, args.workers, env, name=f"dls+{name}")
        stack.callback(server.stop)
        print(f"bench: dls+{name} ({assignments}) up, pid {server.pid}", flush=True)
        started.append((f"dls+{name}", other, server.pid))
    return started


def create_pg_database(args: argparse.Namespace) -> str:
    drop_pg_database(args)
    pgdb(args, "create")
    admin = args.pg_admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{admin}/{args.pg_database}"


def drop_pg_database(args: argparse.Namespace) -> None:
    pgdb(args, "drop")


def pgdb(args: argparse.Namespace, action: str) -> None:
    command = [sys.executable, str(PGDB_SCRIPT), action, args.pg_admin_url, args.pg_database]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"pgdb {action} failed: {done.stderr.strip()}")


def write_manifest(fleet: SeededFleet, path: Path) -> None:
    lines = ["device_id\tmac\tsip_user\tuser_agent\tpath"]
    lines += [
        f"{p.device_id}\t{p.mac}\t{p.sip_user}\t{p.user_agent}\t{p.path}" for p in fleet.phones
    ]
    path.write_text("\n".join(lines) + "\n")


async def collect(instance: DlsInstance, phones: list[Phone]) -> dict[str, bytes]:
    """Every phone's file through dls with Digest; each checked for its own secrets."""
    context = ssl.create_default_context(cafile=str(instance.ca_file))
    nonce = {"value": challenge_nonce(instance, phones[0])}
    issued = {"at": time.monotonic()}
    bodies: dict[str, bytes] = {}
    queue: asyncio.Queue[Phone] = asyncio.Queue()
    for phone in phones:
        queue.put_nowait(phone)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            phone = queue.get_nowait()
            if time.monotonic() - issued["at"] > NONCE_REFRESH_S:
                nonce["value"] = await asyncio.to_thread(challenge_nonce, instance, phone)
                issued["at"] = time.monotonic()
            headers = {
                "User-Agent": phone.user_agent,
                "Authorization": authorization(phone, nonce["value"]),
            }
            async with session.get(instance.base_url + phone.path, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise PreflightError(f"dls: GET {phone.path} answered {response.status}")
            text = body.decode()
            missing = [line for line in phone.expected_lines() if line not in text.splitlines()]
            if missing:
                raise PreflightError(f"dls: {phone.path} lacks {missing[0].split(' = ')[0]}")
            bodies[phone.file_name] = body

    connector = aiohttp.TCPConnector(limit=COLLECT_CONNECTIONS, ssl=context)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(COLLECT_CONNECTIONS)))
    return bodies


def build_targets(
    args: argparse.Namespace,
    run: Run,
    run_dir: Path,
    files_dir: Path,
    dls_pid: int,
    stack: contextlib.ExitStack,
    variants: list[tuple[str, DlsInstance, int]],
) -> list[BenchTarget]:
    phones = run.fleet.phones
    dls_expected = {p.path: run.bodies[p.file_name] for p in phones}
    static_expected = {"/" + p.file_name: run.bodies[p.file_name] for p in phones}
    lists = run_dir / "lists"
    lists.mkdir()
    ca = run.instance.ca_file

    def dls_target(
        name: str, subset: list[Phone], digest: bool, legacy: bool, cursor: Cursor
    ) -> BenchTarget:
        target = Target(
            name, run.instance.base_url, lists / f"{name}.txt", ca, dls_pid, dls_expected
        )
        return BenchTarget(target, subset, lambda p: p.path, digest, legacy, cursor)

    fleet_cursor = Cursor()
    targets = [dls_target("dls", phones, True, False, fleet_cursor)]
    if not args.no_legacy:
        targets.append(dls_target("dls-legacy", phones, False, True, fleet_cursor))
    if args.hot:
        targets.append(dls_target("dls-hot", phones[: args.hot], True, False, Cursor()))
    for name, other, pid in variants:
        # A layer's handler answers a fixed body: the preflight checks its status only.
        expected = None if fixed_body(name) else dls_expected
        target = Target(name, other.base_url, lists / f"{name}.txt", ca, pid, expected)
        targets.append(BenchTarget(target, phones, lambda p: p.path, True, False, Cursor()))
    # The baselines serve dls's own certificate chain and key, so handshakes carry the
    # same certificates; the files are the bytes dls served.
    certificate = CertificateFiles(
        ca, run.instance.certs / "server.pem", run.instance.certs / "server.key"
    )
    for name in args.baselines:
        if name == "aiohttp":
            server, port = servers.start_bare_aiohttp(files_dir, certificate, args.workers, run_dir)
        else:
            nginx = find_or_install("nginx")
            if nginx is None:
                continue
            server, port = servers.start_nginx(nginx, files_dir, certificate, args.workers, run_dir)
        stack.callback(server.stop)
        target = Target(
            name,
            f"https://127.0.0.1:{port}",
            lists / f"{name}.txt",
            ca,
            server.pid,
            static_expected,
            baseline=True,
        )
        # Same headers as dls's requests (User-Agent and Authorization), ignored.
        targets.append(BenchTarget(target, phones, lambda p: "/" + p.file_name, digest=True))
    return targets


def load_generator(args: argparse.Namespace, wrk: str, run_dir: Path) -> LoadGenerator:
    needs_shim = any(s.needs_full_handshake_shim for s in args.scenarios)
    shim = build_full_handshake_shim(run_dir) if needs_shim else None
    generator = LoadGenerator(wrk, args.threads, shim)
    for scenario in [s for s in args.scenarios if not generator.supports(s)]:
        print(f"bench: skipping {scenario.value}: no full-handshake shim")
        args.scenarios.remove(scenario)
    return generator


# --- measuring -------------------------------------------------------------------------------


def prepare(run: Run, target: BenchTarget) -> None:
    """Legacy flag as this target needs it, a fresh nonce, the request list."""
    if target.legacy is not None and target.legacy != run.legacy_state:
        asyncio.run(
            set_legacy_mac_only(
                run.instance.effective_database_url, run.fleet.tenant_id, target.legacy
            )
        )
        run.legacy_state = target.legacy
    if target.legacy is False or not run.last_nonce:
        run.last_nonce = challenge_nonce(run.instance, run.fleet.phones[0])
    # A baseline ignores the header (it only makes requests as long as dls's), so while the
    # tenant is in legacy mode (no challenge) it reuses the latest nonce.
    target.write_requests(run.last_nonce)


def measure(run: Run, generator: LoadGenerator) -> int:
    args = run.args
    checks = {}
    for target in run.targets:
        prepare(run, target)
        checks[target.name] = preflight(target.target)
        print(
            f"bench: {target.name} at {target.target.base_url}: "
            f"{report.describe(checks[target.name])}",
            flush=True,
        )
    started, machine = time.time(), report.environment()
    samples: list[report.Sample] = []
    extras: dict[tuple[str, str, int], Extra] = {}
    for repeat in range(args.repeat):
        for scenario in args.scenarios:
            first = repeat % len(run.targets)
            for target in run.targets[first:] + run.targets[:first]:
                prepare(run, target)
                if target.legacy is not None:
                    preflight(target.target)  # the fresh nonce (or the legacy switch) works
                connections = scenario.default_connections
                if args.warmup:
                    warm = generator.run(
                        target.target.base_url,
                        target.target.request_list,
                        scenario,
                        args.warmup,
                        rate=args.rate,
                    )
                    target.advance(warm.requests, connections)
                    time.sleep(SETTLE_S)
                sample, extra = run_one(run, generator, target, scenario, repeat)
                target.advance(sample.load.requests, connections)
                samples.append(sample)
                extras[(target.name, scenario.value, repeat)] = extra
                db = extra.db_cpu_s
                db_text = (
                    f", db {db * 1000 / sample.load.requests:.3f} ms/req"
                    if db is not None and sample.load.requests
                    else ""
                )
                print(f"bench: {report.describe_sample(sample)}{db_text}", flush=True)
    summary = report.summarise(samples)
    names = [t.name for t in run.targets]
    namespace = argparse.Namespace(
        scenarios=args.scenarios,
        workers=args.workers,
        duration=args.duration,
        repeat=args.repeat,
        threads=args.threads,
        devices=args.devices,
        warmup=args.warmup,
        seed=args.seed,
        results_dir=args.results_dir,
    )
    print()
    print(
        f"dls {args.devices:,} phones, {args.database}, {args.workers} worker(s), "
        f"Digest MD5 per device (dls), legacy MAC-only (dls-legacy)"
    )
    print(report.table(summary, namespace, names))
    db_medians = db_cpu_medians(samples, extras)
    verdicts = check_targets(summary, db_medians, args)
    print()
    print(format_checks(verdicts, db_medians))
    if failed := sorted({name for (name, _), cell in summary.items() if cell.errors}):
        print(f"bench: WARNING: {', '.join(failed)} had errors; their figures count failures")
    path = write_results(
        run, namespace, machine, checks, samples, summary, extras, started, verdicts, db_medians
    )
    print(f"bench: results written to {path}")
    if args.profile:
        profile(run, generator, path.with_suffix(""), args.profile)
    if args.perf:
        by_library(run, generator, path.with_suffix(""), args.perf.split(","))
    return 0


def by_library(run: Run, generator: LoadGenerator, stem: Path, names: list[str]) -> None:
    """Per scenario, one run of each named target under ``perf record``; its CPU per
    request split by library (``perf_libraries``), the targets side by side."""
    perf = perf_libraries.find_perf()
    if perf is None:
        print("bench: --perf needs perf (apt-get install linux-perf)")
        return
    targets = [t for t in run.targets if t.name in names]
    if missing := set(names) - {t.name for t in targets}:
        known = ", ".join(t.name for t in run.targets)
        print(f"bench: --perf {', '.join(sorted(missing))}: no such target ({known})")
        return
    for scenario in run.args.scenarios:
        per_request: dict[str, dict[str, float]] = {}
        for target in sorted(targets, key=lambda t: names.index(t.name)):
            prepare(run, target)
            pid = target.target.pid
            assert pid is not None
            recording = Path(f"{stem}-perf-{target.name}-{scenario.value}.data")
            before = proctree.snapshot(pid)
            recorder = perf_libraries.start(perf, before.ticks, recording, run.args.duration)
            load = generator.run(
                target.target.base_url,
                target.target.request_list,
                scenario,
                run.args.duration,
            )
            spent_ms = proctree.snapshot(pid).seconds_since(before) * 1000
            recorder.wait()
            target.advance(load.requests, scenario.default_connections)
            cpu_ms = spent_ms / load.requests if load.requests else 0.0
            shares = perf_libraries.shares(perf, recording)
            per_request[target.name] = {lib: share * cpu_ms for lib, share in shares.items()}
        text = (
            f"{scenario.value}, {run.args.devices:,} phones, {run.args.database}, "
            f"{run.args.workers} worker(s), under perf: server CPU ms per request by library\n\n"
            + perf_libraries.table(per_request)
        )
        Path(f"{stem}-perf-{scenario.value}.md").write_text(text + "\n")
        print(text)


def profile(run: Run, generator: LoadGenerator, stem: Path, name: str) -> None:
    """One run per scenario of target ``name`` under py-spy; event-loop profile and thread
    CPU split."""
    py_spy = pyspy.find_py_spy()
    if py_spy is None:
        print("bench: --profile needs py-spy (pip install py-spy)")
        return
    target = next((t for t in run.targets if t.name == name), None)
    if target is None:
        print(f"bench: --profile {name}: no such target ({', '.join(t.name for t in run.targets)})")
        return
    pid = target.target.pid
    assert pid is not None
    for scenario in run.args.scenarios:
        prepare(run, target)
        raw = Path(f"{stem}-profile-{name}-{scenario.value}.raw")
        spy = pyspy.start(py_spy, pid, raw, run.args.duration + 1)
        time.sleep(1.0)  # py-spy attaches
        threads_before = thread_ticks(pid)
        load = generator.run(
            target.target.base_url,
            target.target.request_list,
            scenario,
            run.args.duration,
            rate=run.args.rate,
        )
        threads_after = thread_ticks(pid)
        spy.wait()
        target.advance(load.requests, scenario.default_connections)
        main_s = other_s = 0.0
        for (process, thread), ticks in threads_after.items():
            spent = (
                ticks - threads_before.get((process, thread), 0)
            ) / proctree.CLOCK_TICKS_PER_SECOND
            if process == thread:
                main_s += spent
            else:
                other_s += spent
        per_request = 1000 / load.requests if load.requests else 0.0
        header = (
            f"{name} {scenario.value}, {run.args.devices:,} phones, {run.args.database}, "
            f"{run.args.workers} worker(s), under py-spy: {load.requests_per_second:,.0f} req/s; "
            f"CPU per request: event-loop threads {main_s * per_request:.3f} ms, "
            f"other threads (aiosqlite, executors) {other_s * per_request:.3f} ms"
        )
        text = header + "\n" + pyspy.summarise(raw, 45)
        Path(f"{stem}-profile-{name}-{scenario.value}.txt").write_text(text + "\n")
        print(text)


def thread_ticks(root_pid: int) -> dict[tuple[int, int], int]:
    """utime + stime per (process, thread) of a process tree."""
    ticks = {}
    for pid in proctree.snapshot(root_pid).ticks:
        task_dir = proctree.PROC / str(pid) / "task"
        try:
            threads = list(task_dir.iterdir())
        except OSError:
            continue
        for task in threads:
            try:
                text = (task / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            ticks[(pid, int(task.name))] = int(fields[11]) + int(fields[12])
    return ticks


def run_one(
    run: Run, generator: LoadGenerator, target: BenchTarget, scenario: Scenario, repeat: int
) -> tuple[report.Sample, Extra]:
    pid = target.target.pid
    before = proctree.snapshot(pid) if pid else None
    measure_db = run.args.database == "postgres" and target.legacy is not None
    sampler = DbCpuSampler(run.args.pg_database) if measure_db else None
    machine_before = proctree.machine_busy_seconds()
    with sampler or contextlib.nullcontext():
        load = generator.run(
            target.target.base_url,
            target.target.request_list,
            scenario,
            run.args.duration,
            rate=run.args.rate,
        )
    machine_cpu_s = proctree.machine_busy_seconds() - machine_before
    extra = Extra(nonce_age_end_s=nonce_age_s(target.nonce) if target.digest else None)
    if sampler is not None:
        extra.db_cpu_s = sampler.seconds
    cpu = None
    if pid and before is not None:
        after = proctree.snapshot(pid)
        if lost := after.lost_processes(before):
            print(f"bench: {target.name}: processes {lost} exited during the run", file=sys.stderr)
        cpu = report.ServerCpu(after.seconds_since(before), after.per_process_seconds_since(before))
    return report.Sample(target.name, scenario, repeat, load, cpu, machine_cpu_s), extra


class DbCpuSampler:
    """CPU of the PostgreSQL backends serving the benchmark's database during a run.

    Backends are found by the database name in their process titles. dls's pool closes
    overflow connections when they are returned, so backends exit during a run and their
    time would be lost to a before/after snapshot: this polls every POLL_S and keeps the
    last value seen per backend (losing at most POLL_S of an exiting backend's time).
    """

    POLL_S = 0.1

    def __init__(self, database: str) -> None:
        self._marker = f" {database} ".encode()
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> DbCpuSampler:
        self._first = self._read()
        self._last = dict(self._first)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._read())

    @property
    def seconds(self) -> float:
        ticks = sum(last - self._first.get(pid, 0) for pid, last in self._last.items())
        return ticks / proctree.CLOCK_TICKS_PER_SECOND

    def _poll(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self._last.update(self._read())

    def _read(self) -> dict[int, int]:
        ticks = {}
        for entry in proctree.PROC.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if self._marker not in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    continue
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
        return ticks


def db_cpu_medians(
    samples: list[report.Sample], extras: dict[tuple[str, str, int], Extra]
) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], list[float]] = {}
    for sample in samples:
        extra = extras[(sample.target, sample.scenario.value, sample.repeat)]
        if extra.db_cpu_s is not None and sample.load.requests:
            values.setdefault((sample.target, sample.scenario.value), []).append(
                extra.db_cpu_s * 1000 / sample.load.requests
            )
    return {key: statistics.median(found) for key, found in values.items()}


def check_targets(
    summary: dict[tuple[str, Scenario], report.Cell],
    db_medians: dict[tuple[str, str], float],
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    """The issue's acceptance figures, for every dls target present."""
    verdicts: list[dict[str, object]] = []
    for (name, scenario), cell in sorted(
        summary.items(), key=lambda kv: (kv[0][0], kv[0][1].value)
    ):
        if not name.startswith("dls"):
            continue
        verdicts.append(
            {
                "target": name,
                "scenario": scenario.value,
                "check": f"p99 < {P99_MAX_MS:g} ms",
                "value": cell.p99_ms,
                "met": cell.p99_ms < P99_MAX_MS,
            }
        )
        if args.rate is not None:
            continue  # every server gets the same offered load: req/s ratios say nothing
        if scenario is Scenario.KEEP_ALIVE and (aio := summary.get(("aiohttp", scenario))):
            ratio = cell.requests_per_second / aio.requests_per_second
            verdicts.append(
                {
                    "target": name,
                    "scenario": scenario.value,
                    "check": f"req/s >= {KEEPALIVE_MIN_VS_AIOHTTP:.0%} of bare aiohttp",
                    "value": ratio,
                    "met": ratio >= KEEPALIVE_MIN_VS_AIOHTTP,
                }
            )
        if scenario is Scenario.NEW_CONNECTION and (ngx := summary.get(("nginx", scenario))):
            if cell.cpu_ms_per_request and ngx.cpu_ms_per_request:
                # "fetches >= 90 % of nginx" by CPU: requests per CPU second, dls / nginx.
                efficiency = ngx.cpu_ms_per_request / cell.cpu_ms_per_request
                verdicts.append(
                    {
                        "target": name,
                        "scenario": scenario.value,
                        "check": f"fetches per CPU s >= {NEWCONN_MIN_VS_NGINX:.0%} of nginx",
                        "value": efficiency,
                        "met": efficiency >= NEWCONN_MIN_VS_NGINX,
                    }
                )
                db = db_medians.get((name, scenario.value))
                if db is not None:
                    with_db = ngx.cpu_ms_per_request / (cell.cpu_ms_per_request + db)
                    verdicts.append(
                        {
                            "target": name,
                            "scenario": scenario.value,
                            "check": "the same, counting PostgreSQL's CPU",
                            "value": with_db,
                            "met": with_db >= NEWCONN_MIN_VS_NGINX,
                        }
                    )
            rps = cell.requests_per_second / ngx.requests_per_second
            verdicts.append(
                {
                    "target": name,
                    "scenario": scenario.value,
                    "check": f"req/s >= {NEWCONN_MIN_VS_NGINX:.0%} of nginx (wrk-bound)",
                    "value": rps,
                    "met": rps >= NEWCONN_MIN_VS_NGINX,
                }
            )
    return verdicts


def format_checks(
    verdicts: list[dict[str, object]], db_medians: dict[tuple[str, str], float]
) -> str:
    lines = ["target checks:"]
    for verdict in verdicts:
        value = float(verdict["value"])  # type: ignore[arg-type]
        shown = f"{value:.2f} ms" if "p99" in str(verdict["check"]) else f"{value:.2f}"
        mark = "met" if verdict["met"] else "MISSED"
        lines.append(
            f"  {verdict['target']:10} {verdict['scenario']:10} {verdict['check']:44} "
            f"{shown:>9}  {mark}"
        )
    for (name, scenario), value in sorted(db_medians.items()):
        lines.append(f"  {name:10} {scenario:10} PostgreSQL backends' CPU: {value:.3f} ms/req")
    return "\n".join(lines)


def write_results(
    run: Run,
    namespace: argparse.Namespace,
    machine: dict[str, object],
    checks: dict[str, PreflightInfo],
    samples: list[report.Sample],
    summary: dict[tuple[str, Scenario], report.Cell],
    extras: dict[tuple[str, str, int], Extra],
    started: float,
    verdicts: list[dict[str, object]],
    db_medians: dict[tuple[str, str], float],
) -> Path:
    harness_path = report.write_json(
        namespace,
        machine,
        [t.target for t in run.targets],
        checks,
        samples,
        summary,
        started,
    )
    document = json.loads(harness_path.read_text())
    harness_path.unlink()
    document["benchmark"] = "dls-files"
    document["settings"].update(
        {
            "database": run.args.database,
            "label": run.args.label,
            "hot": run.args.hot,
            "rate": run.args.rate,
            "dls_env": run.args.dls_env,
            "mean_body_bytes": statistics.mean(len(b) for b in run.bodies.values()),
        }
    )
    document["timings"] = run.timings
    document["dls_source"] = dls_source()
    document["db_cpu_ms_per_request"] = [
        {"target": name, "scenario": scenario, "median": value}
        for (name, scenario), value in db_medians.items()
    ]
    document["checks"] = verdicts
    for entry in document["samples"]:
        extra = extras[(entry["target"], entry["scenario"], entry["repeat"])]
        entry["db_cpu_s"] = extra.db_cpu_s
        entry["nonce_age_end_s"] = extra.nonce_age_end_s
    stamp = Path(harness_path).stem.removeprefix("files-")
    rate = f"-r{run.args.rate:g}" if run.args.rate is not None else ""
    path = run.args.results_dir / (
        f"dls-{stamp}-{run.args.database}-{run.args.devices}-w{run.args.workers}{rate}.json"
    )
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
