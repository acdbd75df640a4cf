"""WPI start-up interactions per second, and a boot storm, against a real dls server.

Each simulated Unify phone (dls.sim.unify) runs a complete start-up interaction over TLS:
start-up -> ReadAllItems -> reply-to -> WriteItems -> accepted -> CleanUp, in a TLS
connection of its own, as a booting phone does. Two modes:

- ``interactions`` (default): ``--phones`` distinct registered phones, ``--concurrency``
  at a time, ``--passes`` times (pass 1 writes the whole configuration, later passes
  only what a start-up always rewrites: the SIP password, which phones do not read back).
  Prints interactions/s and the latency of a whole interaction (p50, p99).
- ``storm``: ``--phones`` phones (10,000 by default) all start within ``--window``
  seconds. The server refuses what it cannot take with 503 + Retry-After; phones wait
  that long (with jitter) and try again. Prints how many were configured, how long until
  the last one was, how many 503s were answered, and the time-to-configured p50/p99.

By default the script starts its own ``dls serve`` (temporary directory, free ports,
SQLite unless ``--database-url``) and registers the phones through the admin API; with
``--device-url`` it uses a running server instead (give ``--admin-url``, ``--ca`` and
the operator's ``--username``/``--password``). Client and server share the machine, so
the figures are a floor; compare runs on the same machine only.

    .venv/bin/python bench/wpi.py
    .venv/bin/python bench/wpi.py storm --phones 10000 --window 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyspy
from wpi_stream import StreamPhone

from dls.sim.unify import SimulationError, UnifyPhone

IMPORT_CHUNK = 5000  # rows per CSV import, the API's limit
PASSWORD = "bench-line-secret"  # noqa: S105 - a throwaway SIP password for the bench fleet
START_TIMEOUT = 120.0


@dataclass
class Server:
    device_url: str
    secure_url: str
    admin_url: str
    ca_file: Path
    username: str
    password: str
    process: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    verify: bool = False  # phones check the server's certificate (--verify)
    lean: bool = True  # phones speak HTTP through wpi_stream, not aiohttp (--client)

    def cpu_seconds(self) -> float | None:
        """utime + stime of the spawned server and its workers, from /proc."""
        if self.process is None:
            return None
        total = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in _process_tree(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def stop(self, *, keep: bool = False) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.root is not None:
            if keep:
                print(f"server directory kept: {self.root} (log: server.log)")
            else:
                shutil.rmtree(self.root, ignore_errors=True)


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spawn(workers: int, database_url: str) -> Server:
    root = Path(tempfile.mkdtemp(prefix="dls-bench-wpi-"))
    ports = {name: _free_port() for name in ("device", "secure", "admin")}
    env = {
        **os.environ,
        "DLS_DATA_DIR": str(root / "var"),
        "DLS_CERTS_DIR": str(root / "certs"),
        "DLS_DATABASE_URL": database_url,
        "DLS_DEVICE_BIND": "127.0.0.1",
        "DLS_ADMIN_BIND": "127.0.0.1",
        "DLS_DEVICE_PORT": str(ports["device"]),
        "DLS_SECURE_PORT": str(ports["secure"]),
        "DLS_ADMIN_PORT": str(ports["admin"]),
        "DLS_MDNS_ENABLED": "false",
        "DLS_ACCESS_LOG": "false",
        "DLS_WORKERS": str(workers),
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dls", "serve"],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        output = (root / "server.log").read_text(errors="replace")
        banner = re.search(r"user (\S+)  password (\S+)", output)
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{output}")
        if banner and _healthy(ports["admin"], root / "certs" / "ca.pem"):
            return Server(
                device_url=f"https://127.0.0.1:{ports['device']}",
                secure_url=f"https://127.0.0.1:{ports['secure']}",
                admin_url=f"https://127.0.0.1:{ports['admin']}",
                ca_file=root / "certs" / "ca.pem",
                username=banner[1],
                password=banner[2],
                process=process,
                root=root,
            )
        time.sleep(0.2)
    raise SystemExit("server did not come up")


def _healthy(port: int, ca: Path) -> bool:
    import http.client

    if not ca.exists():
        return False
    try:
        connection = http.client.HTTPSConnection(
            "localhost", port, context=ssl.create_default_context(cafile=str(ca)), timeout=2
        )
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False


class Admin:
    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.context = ssl.create_default_context(cafile=str(server.ca_file))
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method,
            f"{self.server.admin_url}/api/v1{path}",
            json=body,
            headers=headers,
            ssl=self.context,
        ) as response:
            payload = await response.json()
            if response.status >= 300:
                raise SystemExit(f"{method} {path}: {response.status} {payload}")
            return payload

    async def prepare_fleet(self, macs: list[str]) -> None:
        login = {"username": self.server.username, "password": self.server.password}
        self.token = (await self.call("POST", "/auth/login", login))["token"]
        name = f"WPI bench {time.strftime('%H%M%S')} {random.randrange(10**6)}"
        tenant = (
            await self.call("POST", "/tenants", {"kind": "customer", "name": name, "country": "DE"})
        )["tenant_id"]
        # Secure mode off: each start-up is the plain sequence, no certificate per phone.
        await self.call("PUT", f"/tenants/{tenant}/wpi-secure-mode", {"mode": "off"})
        settings = {
            "time": {"ntp_servers": ["ntp.example.net"], "time_zone": "Europe/Berlin"},
            "language": "de",
            "lines": {
                "1": {"sip_user": "bench", "password": PASSWORD, "registrar": "sip.example.net"}
            },
        }
        await self.call("PUT", f"/tenants/{tenant}/settings", {"settings": settings})
        for start in range(0, len(macs), IMPORT_CHUNK):
            rows = "\n".join(f"{mac},OpenStage 40,,1" for mac in macs[start : start + IMPORT_CHUNK])
            report = await self.call("POST", f"/tenants/{tenant}/devices/import", {"csv": rows})
            errors = [row for row in report if row.get("outcome") == "error"]
            if errors:
                raise SystemExit(f"import failed: {errors[:3]}")


@dataclass
class Outcome:
    latency: float = 0.0  # seconds for the whole interaction (including 503 waits)
    finished_at: float = 0.0  # since the start of the run
    configured: bool = False
    refused: int = 0
    error: str | None = None


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    wall: float = 0.0
    cpu: float | None = None
    client_cpu: float = 0.0  # this process: the simulated phones


_TLS: dict[tuple[Path, bool], ssl.SSLContext] = {}


def _client_tls(ca_file: Path, verify: bool) -> ssl.SSLContext:
    """One context for all phones. Like phones in default mode, which do not check the
    server's certificate (wpi-protocol reference, DG p.12), it does not verify: the
    client's signature check is not part of the server's cost. ``--verify`` checks it."""
    if (ca_file, verify) not in _TLS:
        context = ssl.create_default_context(cafile=str(ca_file))
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _TLS[ca_file, verify] = context
    return _TLS[ca_file, verify]


def _macs(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    macs: set[str] = set()
    while len(macs) < count:
        macs.add(f"02{rng.getrandbits(40):010x}")  # locally administered: never a real phone
    return sorted(macs)


async def _boot(server: Server, mac: str, started: float, max_refusals: int) -> Outcome:
    # Its own TLS connection, as a booting phone has; one client context for all phones.
    tls = _client_tls(server.ca_file, server.verify)
    phone: UnifyPhone
    if server.lean:
        address = urllib.parse.urlsplit(server.device_url)
        assert address.hostname and address.port
        phone = StreamPhone(
            mac, host=address.hostname, port=address.port, tls=tls, max_refusals=max_refusals
        )
    else:
        phone = UnifyPhone(
            mac,
            device_url=server.device_url,
            secure_url=server.secure_url,
            tls=tls,
            max_refusals=max_refusals,
        )
    begin = time.perf_counter()
    outcome = Outcome()
    try:
        interactions = await phone.start_up()
        outcome.configured = any(i.configured for i in interactions)
        outcome.refused = sum(i.refused for i in interactions)
    except (SimulationError, aiohttp.ClientError, OSError, TimeoutError) as error:
        outcome.error = f"{type(error).__name__}: {error}"[:200]
    finally:
        await phone.close()
    outcome.latency = time.perf_counter() - begin
    outcome.finished_at = time.perf_counter() - started
    return outcome


async def interactions(
    server: Server, macs: list[str], concurrency: int, rate: float | None = None
) -> Run:
    """Closed loop: ``concurrency`` phones at a time, each starting when one finishes.
    Open loop (``rate``): a phone starts every 1/rate seconds whatever the others do, and
    at most ``concurrency`` run at once, so latency is measured at that offered load."""
    limit = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    cpu_before = server.cpu_seconds()
    client_before = time.process_time()

    async def one(number: int, mac: str) -> Outcome:
        if rate:
            await asyncio.sleep(started + number / rate - time.perf_counter())
        async with limit:
            return await _boot(server, mac, started, max_refusals=1000)

    outcomes = await asyncio.gather(*(one(number, mac) for number, mac in enumerate(macs)))
    run = Run(list(outcomes), time.perf_counter() - started)
    run.client_cpu = time.process_time() - client_before
    if cpu_before is not None:
        run.cpu = (server.cpu_seconds() or 0.0) - cpu_before
    return run


async def storm(server: Server, macs: list[str], window: float) -> Run:
    started = time.perf_counter()
    cpu_before = server.cpu_seconds()
    client_before = time.process_time()

    async def one(mac: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, window))
        return await _boot(server, mac, started, max_refusals=10_000)

    outcomes = await asyncio.gather(*(one(mac) for mac in macs))
    run = Run(list(outcomes), time.perf_counter() - started)
    run.client_cpu = time.process_time() - client_before
    if cpu_before is not None:
        run.cpu = (server.cpu_seconds() or 0.0) - cpu_before
    return run


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(title: str, run: Run, *, storm_mode: bool) -> None:
    done = [o for o in run.outcomes if o.error is None]
    configured = [o for o in done if o.configured]
    errors = [o.error for o in run.outcomes if o.error]
    latencies = [o.latency * 1000 for o in done]
    print(f"\n{title}")
    print(f"  phones            {len(run.outcomes)}, configured {len(configured)}")
    print(f"  wall time         {run.wall:.2f} s")
    if storm_mode:
        last = max((o.finished_at for o in configured), default=float("nan"))
        print(f"  all configured at {last:.2f} s after the first boot")
        print(
            f"  time to configured p50 {_percentile(latencies, 0.5):.0f} ms, "
            f"p99 {_percentile(latencies, 0.99):.0f} ms"
        )
        # Where the time went: a server told to turn phones away sits idle while they wait.
        per_window = collections.Counter(int(o.finished_at // 10) for o in configured)
        series = " ".join(str(per_window.get(n, 0)) for n in range(max(per_window, default=-1) + 1))
        print(f"  configured per 10 s  {series}")
    else:
        print(f"  interactions/s    {len(done) / run.wall:.1f}")
        print(
            f"  interaction       p50 {_percentile(latencies, 0.5):.1f} ms, "
            f"p99 {_percentile(latencies, 0.99):.1f} ms, mean {statistics.fmean(latencies):.1f} ms"
            if latencies
            else "  no interaction completed"
        )
    refused = sum(o.refused for o in run.outcomes)
    print(
        f"  503 answers       {refused} (phones refused at least once: "
        f"{sum(1 for o in run.outcomes if o.refused)})"
    )
    if run.cpu is not None and done:
        print(
            f"  server CPU        {run.cpu:.1f} s, {run.cpu * 1000 / len(done):.2f} ms/interaction"
        )
    if run.client_cpu and done:
        print(
            f"  client CPU        {run.client_cpu:.1f} s, "
            f"{run.client_cpu * 1000 / len(done):.2f} ms/interaction (simulated phones)"
        )
    if errors:
        print(f"  errors            {len(errors)}, e.g. {errors[0]}")


@contextlib.contextmanager
def _sampled(server: Server, directory: str | None, name: str) -> Iterator[None]:
    """py-spy on the server (its event-loop threads) and on this client while the block
    runs; the summaries go to ``directory``/``name``-{server,client}.txt."""
    py_spy = pyspy.find_py_spy() if directory else None
    if directory and not py_spy:
        print("bench: --profile needs py-spy (pip install py-spy)")
    if not directory or not py_spy or server.process is None:
        yield
        return
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # The client's own process only: the server it spawned is its child.
    targets = {"server": (server.process.pid, True), "client": (os.getpid(), False)}
    samplers = {
        side: pyspy.start(
            py_spy, pid, out / f"{name}-{side}.raw", duration_s=3600, children=children
        )
        for side, (pid, children) in targets.items()
    }
    try:
        yield
    finally:
        for sampler in samplers.values():
            sampler.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        for side, sampler in samplers.items():
            sampler.wait(60)
            text = pyspy.summarise(out / f"{name}-{side}.raw", top=40)
            (out / f"{name}-{side}.txt").write_text(text + "\n")
            print(f"  profile           {out / f'{name}-{side}.txt'}")


async def main(args: argparse.Namespace) -> None:
    if args.device_url:
        server = Server(
            device_url=args.device_url,
            secure_url=args.secure_url or args.device_url,
            admin_url=args.admin_url,
            ca_file=Path(args.ca),
            username=args.username,
            password=args.password,
        )
    else:
        server = spawn(args.workers, args.database_url)
    server.verify, server.lean = args.verify, args.client == "lean"
    try:
        macs = _macs(args.phones, args.seed)
        began = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            await Admin(server, session).prepare_fleet(macs)
        print(f"registered {len(macs)} phones in {time.perf_counter() - began:.1f} s")
        database = "PostgreSQL" if "postgresql" in args.database_url else "SQLite"
        print(f"server: {args.workers} worker(s), {database}, on {os.cpu_count()} CPUs shared")
        if args.mode == "storm":
            with _sampled(server, args.profile, "storm"):
                run = await storm(server, macs, args.window)
            report(
                f"boot storm: {len(macs)} phones starting within {args.window:g} s",
                run,
                storm_mode=True,
            )
            return
        for number in range(1, args.passes + 1):
            with _sampled(server, args.profile, f"pass{number}"):
                run = await interactions(server, macs, args.concurrency, args.rate)
            what = "first configuration" if number == 1 else "steady state"
            offered = f", {args.rate:g}/s offered" if args.rate else ""
            report(
                f"pass {number} ({what}): {len(macs)} phones, "
                f"{args.concurrency} concurrent{offered}",
                run,
                storm_mode=False,
            )
    finally:
        if not args.device_url:
            server.stop(keep=args.keep)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "mode", nargs="?", choices=("interactions", "storm"), default="interactions"
    )
    parser.add_argument("--phones", type=int, default=None, help="1000, or 10000 for storm")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: start this many phones a second (at most "
        "--concurrency at once) instead of a new one whenever one finishes",
    )
    parser.add_argument("--window", type=float, default=10.0, help="storm: seconds to boot all")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default="", help="default: SQLite in the temp dir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the spawned server's files")
    parser.add_argument("--device-url", help="use a running server instead of spawning one")
    parser.add_argument("--secure-url")
    parser.add_argument("--admin-url")
    parser.add_argument("--ca")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument(
        "--client",
        choices=("lean", "sim"),
        default="lean",
        help="lean: the simulated "
        "phones with HTTP on a bare TLS stream (bench/wpi_stream.py); sim: through aiohttp, "
        "as in the tests",
    )
    parser.add_argument(
        "--verify", action="store_true", help="simulated phones verify the server certificate"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample server and client with py-spy during each "
        "pass and write per-function summaries to DIR",
    )
    args = parser.parse_args()
    if args.phones is None:
        args.phones = 10_000 if args.mode == "storm" else 1000
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(arguments))
    else:
        uvloop.run(main(arguments))
