"""Firmware downloads: dls against nginx serving the same image over TLS, in one run.

    python bench/firmware.py                       # 50 MiB, 8 and 64 downloads, 10 s each
    python bench/firmware.py --repeat 3 --duration 15 --workers 1
    python bench/firmware.py --help

Both servers run on this machine with ECDSA P-256 certificates and TLS 1.3; wrk downloads
the image over and over with 8, then 64, connections (keep-alive) and reports the bytes it
read. dls serves the image the way a phone gets it: ``/fw/<signed token>/<name>`` on the
device listener, the bytes read from its blob store (``dls firmware import``). While the
64-connection run goes, the dls process tree's VmRSS is sampled from ``/proc`` every
100 ms: the growth from idle is the memory the downloads cost.

Figures move with whatever else runs on a shared machine: compare dls with nginx inside
one run (the ratio), never absolute MB/s across runs (performance notes).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import proctree
import servers
from loadgen import LUA_SCRIPT, RESULT_MARKER, Request, _parse, write_request_list
from tlscert import CertificateFiles, create_certificate
from tools import find_or_install

RESULTS_DIR = Path(__file__).with_name("results")
MIB = 1024 * 1024
IMAGE_NAME = "image.rom"
VENDOR, MODEL, VERSION = "yealink", "T46U", "108.99.0.1"
DEVICE_ID, DEVICE_MAC = 1, "02be00000001"  # the token's device; downloads need no row
SAMPLE_INTERVAL_S = 0.1
DOWNLOAD_TIMEOUT_S = 300  # per request: 64 downloads of 50 MiB share one server
START_TIMEOUT_S = 120.0
TARGET_RATIO = 0.70
TARGET_RSS_GROWTH_MB = 100.0


@dataclass(slots=True)
class Measurement:
    server: str
    connections: int
    run: int
    megabytes_per_second: float
    requests: int
    errors: dict[str, int]
    client_cpu_s: float
    server_cpu_s: float | None = None
    rss_idle_mb: float | None = None
    rss_peak_mb: float | None = None
    hwm_mb: float | None = None


@dataclass(slots=True)
class Report:
    machine: dict[str, object]
    settings: dict[str, object]
    measurements: list[Measurement] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=50, help="image size in MiB")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument(
        "--connections", default="8,64", help="concurrent downloads, comma-separated"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes of each server")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario (median)")
    parser.add_argument(
        "--accel",
        action="store_true",
        help="also measure dls behind nginx with firmware_accel_redirect (nginx sends the bytes)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = find_or_install("wrk")
    nginx = find_or_install("nginx")
    if wrk is None or nginx is None:
        print("bench: wrk and nginx are both needed for a ratio; nothing measured")
        return 2
    connections = [int(value) for value in args.connections.split(",")]
    run_dir = Path(tempfile.mkdtemp(prefix="dls-bench-firmware-"))
    report = Report(machine=_machine(), settings=vars(args))
    started: list[servers.ServerProcess] = []
    try:
        image = _write_image(run_dir / "static" / IMAGE_NAME, args.size_mb * MIB)
        digest = _sha256(image)
        certificate = create_certificate(run_dir / "tls")
        nginx_server, nginx_port = servers.start_nginx(
            nginx, image.parent, certificate, args.workers, run_dir
        )
        started.append(nginx_server)
        dls_root = run_dir / "dls"
        dls_server, dls_port, token = _start_dls(dls_root, image, args.workers)
        started.append(dls_server)
        targets = {
            "nginx": (nginx_server, f"https://127.0.0.1:{nginx_port}/{IMAGE_NAME}", certificate.ca),
            "dls": (
                dls_server,
                f"https://127.0.0.1:{dls_port}/fw/{token}/{IMAGE_NAME}",
                dls_root / "certs" / "ca.pem",
            ),
        }
        if args.accel:
            accel_root = run_dir / "dls-accel"
            accel, accel_port, accel_token = _start_dls(
                accel_root, image, args.workers, accel_redirect=ACCEL_LOCATION
            )
            started.append(accel)
            front, front_port = _start_front(
                nginx, certificate, accel_root, accel_port, args.workers
            )
            started.append(front)
            targets["dls+nginx"] = (
                front,
                f"https://127.0.0.1:{front_port}/fw/{accel_token}/{IMAGE_NAME}",
                certificate.ca,
            )
        for name, (_, url, ca) in targets.items():
            _preflight(name, url, ca, digest)
        for run in range(1, args.repeat + 1):
            for count in connections:
                # Alternate which server goes first, so drift on the machine hits both.
                order = ["nginx", "dls"] if run % 2 else ["dls", "nginx"]
                order += ["dls+nginx"] if "dls+nginx" in targets else []
                for name in order:
                    server, url, _ = targets[name]
                    measured = _load(wrk, name, server, url, count, run, args, run_dir)
                    report.measurements.append(measured)
                    print(_line(measured), flush=True)
        _print_summary(report, connections)
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"firmware-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.write_text(json.dumps(asdict(report), indent=2))
        print(f"bench: samples written to {out}")
        return 0
    finally:
        for server in reversed(started):
            server.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


# --- the servers ----------------------------------------------------------------------------


def _write_image(path: Path, size: int) -> Path:
    """Random bytes: no compression or caching trick can make one server look better."""
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(os.urandom(MIB))
        handle.write(os.urandom(size % MIB))
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def _dls_environment(root: Path, ports: dict[str, int]) -> dict[str, str]:
    return {
        **os.environ,
        "DLS_DATA_DIR": str(root / "var"),
        "DLS_CERTS_DIR": str(root / "certs"),
        "DLS_DATABASE_URL": "",
        "DLS_DEVICE_BIND": "127.0.0.1",
        "DLS_ADMIN_BIND": "127.0.0.1",
        "DLS_DEVICE_PORT": str(ports["device"]),
        "DLS_SECURE_PORT": str(ports["secure"]),
        "DLS_ADMIN_PORT": str(ports["admin"]),
        "DLS_MDNS_ENABLED": "false",
        "DLS_ACCESS_LOG": "false",  # one line per 50 MiB is nothing; keep the output short
    }


def _dls(root: Path, environment: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dls", *args],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"dls {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _start_dls(
    root: Path, image: Path, workers: int, accel_redirect: str = ""
) -> tuple[servers.ServerProcess, int, str]:
    """``dls init``, ``dls firmware import``, ``dls serve``; the server, port and token."""
    root.mkdir()
    ports = {name: servers.free_port() for name in ("device", "secure", "admin")}
    environment = _dls_environment(root, ports)
    environment["DLS_FIRMWARE_ACCEL_REDIRECT"] = accel_redirect
    _dls(root, environment, "init")
    imported = _dls(
        root, environment, "firmware", "import", str(image),
        "--vendor", VENDOR, "--model", MODEL, "--version", VERSION,
    )  # fmt: skip
    found = re.match(r"image (\d+) ", imported)
    if found is None:
        raise RuntimeError(f"unexpected import output: {imported}")
    token = _token(root, int(found[1]))
    log = root / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dls", "serve", f"--workers={workers}", "--no-mdns"],
            cwd=root,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = servers.ServerProcess("dls", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(ports["device"], root / "certs" / "ca.pem"):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"dls did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    if workers > 1:
        time.sleep(2.0)  # the first worker answers before the others listen
    return server, ports["device"], token


FRONT_CONF = """\
daemon off;
worker_processes {workers};
pid {run_dir}/front.pid;
error_log {run_dir}/front-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {run_dir}/front-body;
    proxy_temp_path {run_dir}/front-proxy;
    fastcgi_temp_path {run_dir}/front-fastcgi;
    uwsgi_temp_path {run_dir}/front-uwsgi;
    scgi_temp_path {run_dir}/front-scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        # The README's configuration: dls checks the token, nginx sends the file.
        location /fw/ {{
            proxy_pass https://127.0.0.1:{dls_port};
            proxy_ssl_trusted_certificate {dls_ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location {location} {{
            internal;
            alias {store}/;
        }}
    }}
}}
"""
ACCEL_LOCATION = "/_dls_firmware/"


def _start_front(
    nginx: str,
    certificate: CertificateFiles,
    dls_root: Path,
    dls_port: int,
    workers: int,
) -> tuple[servers.ServerProcess, int]:
    """nginx in front of dls with X-Accel-Redirect, as the README configures it."""
    port = servers.free_port()
    run_dir = dls_root.parent
    config = run_dir / "front.conf"
    store = dls_root / "var" / "firmware"
    config.write_text(
        FRONT_CONF.format(
            workers=workers,
            run_dir=run_dir,
            port=port,
            certificate=certificate.certificate,
            key=certificate.key,
            dls_port=dls_port,
            dls_ca=dls_root / "certs" / "ca.pem",
            location=ACCEL_LOCATION,
            store=store,
        )
    )
    # nginx workers run as "nobody" when started as root: the store must be reachable.
    for directory in (run_dir, dls_root, dls_root / "var", store, *store.iterdir()):
        if directory.is_dir():
            directory.chmod(0o755)
    log = run_dir / "front.log"
    command = [nginx, "-p", str(run_dir), "-e", str(run_dir / "front-error.log"), "-c", str(config)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = servers.ServerProcess("dls+nginx", process, log)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"front nginx did not start; see {log}") from None
            time.sleep(0.05)
    return server, port


def _token(root: Path, image_id: int) -> str:
    """A download token signed with this installation's key, as a device's config holds."""
    from dls.config import load_settings
    from dls.firmware.tokens import TOKEN_KEY_LABEL, DownloadTokens
    from dls.secretbox import load_secret_box

    settings = load_settings(None, certs_dir=root / "certs", data_dir=root / "var")
    tokens = DownloadTokens(
        load_secret_box(settings).derive(TOKEN_KEY_LABEL), settings.firmware_url_ttl
    )
    return tokens.issue(DEVICE_ID, DEVICE_MAC, image_id, time.time())


def _healthy(port: int, ca: Path) -> bool:
    if not ca.exists():
        return False
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)), timeout=2
    )
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _preflight(name: str, url: str, ca: Path, digest: str) -> None:
    """One full download with the CA checked: wrk verifies nothing and counts 404s as fast."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, context=context)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        hasher = hashlib.sha256()
        while block := response.read(MIB):
            hasher.update(block)
        if response.status != 200 or hasher.hexdigest() != digest:
            raise RuntimeError(f"{name}: preflight got {response.status}, not the image")
    finally:
        connection.close()


# --- measuring ------------------------------------------------------------------------------


def _load(
    wrk: str,
    name: str,
    server: servers.ServerProcess,
    url: str,
    connections: int,
    run: int,
    args: argparse.Namespace,
    run_dir: Path,
) -> Measurement:
    parts = urlsplit(url)
    request_list = run_dir / f"requests-{name}.txt"
    write_request_list([Request(parts.path)], request_list)
    command = [
        wrk, f"-t{min(args.threads, connections)}", f"-c{connections}", f"-d{args.duration}s",
        f"--timeout={DOWNLOAD_TIMEOUT_S}s", "-s", str(LUA_SCRIPT),
        f"{parts.scheme}://{parts.netloc}", "--", str(request_list),
    ]  # fmt: skip
    sampler = _RssSampler(server.pid) if name == "dls" else None
    idle = sampler.sample() if sampler else None
    cpu_before = proctree.snapshot(server.pid)
    if sampler:
        sampler.start()
    before = os.times()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    after = os.times()
    if sampler:
        sampler.stop()
    cpu = proctree.snapshot(server.pid).seconds_since(cpu_before)
    if completed.returncode or RESULT_MARKER not in completed.stdout:
        raise RuntimeError(f"wrk failed: {completed.stdout}\n{completed.stderr}")
    client_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    result = _parse(completed.stdout, client_cpu, command)
    return Measurement(
        server=name,
        connections=connections,
        run=run,
        megabytes_per_second=result.bytes / result.duration_s / 1e6,
        requests=result.requests,
        errors=result.errors,
        client_cpu_s=round(client_cpu, 2),
        server_cpu_s=round(cpu, 2),
        rss_idle_mb=idle.rss_mb if idle else None,
        rss_peak_mb=sampler.peak_rss_mb if sampler else None,
        hwm_mb=sampler.hwm_mb if sampler else None,
    )


@dataclass(frozen=True, slots=True)
class _Memory:
    rss_mb: float  # VmRSS summed over the tree
    hwm_mb: float  # VmHWM summed over the tree (each process's own peak)


class _RssSampler:
    """VmRSS/VmHWM of a process tree from /proc, sampled in a thread during a run."""

    def __init__(self, root_pid: int) -> None:
        self._root = root_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_rss_mb = 0.0
        self.hwm_mb = 0.0

    def sample(self) -> _Memory:
        pids = list(proctree.snapshot(self._root).ticks)
        rss = hwm = 0
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            rss += _kilobytes(status, "VmRSS")
            hwm += _kilobytes(status, "VmHWM")
        return _Memory(rss / 1024, hwm / 1024)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_mb = self.sample().hwm_mb

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, self.sample().rss_mb)
            self._stop.wait(SAMPLE_INTERVAL_S)


def _kilobytes(status: str, key: str) -> int:
    found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found[1]) if found else 0


# --- reporting ------------------------------------------------------------------------------


def _line(m: Measurement) -> str:
    text = (
        f"{m.server:<6} c={m.connections:<3} run {m.run}: {m.megabytes_per_second:8.1f} MB/s "
        f"{m.requests:5d} downloads, server CPU {m.server_cpu_s} s, wrk CPU {m.client_cpu_s} s"
    )
    if any(m.errors.values()):
        text += f", errors {m.errors}"
    if m.rss_peak_mb is not None and m.rss_idle_mb is not None:
        text += f", RSS {m.rss_idle_mb:.1f} -> {m.rss_peak_mb:.1f} MB"
    return text


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _print_summary(report: Report, connections: list[int]) -> None:
    print()
    accel = any(m.server == "dls+nginx" for m in report.measurements)
    header = "| downloads | nginx MB/s | dls MB/s | dls / nginx | dls RSS idle -> peak (growth) |"
    print(header + (" dls+nginx MB/s |" if accel else ""))
    print("| --- | --- | --- | --- | --- |" + (" --- |" if accel else ""))
    for count in connections:
        rows = [m for m in report.measurements if m.connections == count]
        nginx = _median([m.megabytes_per_second for m in rows if m.server == "nginx"])
        dls_rows = [m for m in rows if m.server == "dls"]
        dls = _median([m.megabytes_per_second for m in dls_rows])
        idle = _median([m.rss_idle_mb or 0 for m in dls_rows])
        peak = _median([m.rss_peak_mb or 0 for m in dls_rows])
        verdict = "ok" if dls >= TARGET_RATIO * nginx else f"below {TARGET_RATIO:.0%}"
        front = _median([m.megabytes_per_second for m in rows if m.server == "dls+nginx"])
        print(
            f"| {count} | {nginx:,.0f} | {dls:,.0f} | {dls / nginx:.0%} ({verdict}) | "
            f"{idle:.0f} -> {peak:.0f} MB ({peak - idle:+.0f} MB) |"
            + (f" {front:,.0f} |" if accel else "")
        )
    dls_runs = [m for m in report.measurements if m.server == "dls"]
    if not dls_runs:
        return
    # RSS does not fall back to idle after a run (the allocator keeps freed memory), so the
    # honest growth is from the idle before the first download to the highest peak.
    first_idle = dls_runs[0].rss_idle_mb or 0.0
    peak = max(m.rss_peak_mb or 0.0 for m in dls_runs)
    hwm = max(m.hwm_mb or 0.0 for m in dls_runs)
    growth = peak - first_idle
    verdict = "ok" if growth < TARGET_RSS_GROWTH_MB else "over"
    print(
        f"\ndls RSS: idle {first_idle:.1f} MB before any download, peak {peak:.1f} MB, "
        f"VmHWM {hwm:.1f} MB: growth {growth:.1f} MB ({verdict}, target < "
        f"{TARGET_RSS_GROWTH_MB:.0f} MB)"
    )


def _machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
