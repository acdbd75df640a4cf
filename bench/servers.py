"""Start and stop the baseline servers: nginx (the static-file limit) and bare aiohttp.

Both listen on 127.0.0.1 only, serve the same directory with the same ECDSA P-256
certificate over TLS 1.3, and run the same number of worker processes sharing the port
with ``SO_REUSEPORT``. Each runs in its own session, so stopping it signals its process
group and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tlscert import CertificateFiles

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
BARE_AIOHTTP_SCRIPT = Path(__file__).with_name("bare_aiohttp.py")

NGINX_CONF = """\
daemon off;
worker_processes {workers};
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ text/plain cfg; }}
    default_type application/octet-stream;
    # Since nginx 1.19.10 a keep-alive connection closes after 1000 requests, which turns
    # a keep-alive run into one handshake per 1000 requests; aiohttp has no such limit.
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=10000 inactive=60s;
    client_body_temp_path {run_dir}/nginx-body;
    proxy_temp_path {run_dir}/nginx-proxy;
    fastcgi_temp_path {run_dir}/nginx-fastcgi;
    uwsgi_temp_path {run_dir}/nginx-uwsgi;
    scgi_temp_path {run_dir}/nginx-scgi;
    server {{
        listen 127.0.0.1:{port} ssl{reuseport};
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        root {root};
    }}
}}
"""


@dataclass(slots=True)
class ServerProcess:
    """A server we started: its process (group leader) and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it outlives the timeout."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def free_port() -> int:
    """A loopback port nobody holds now.

    Bound without SO_REUSEPORT on purpose: if a stale server from an earlier run still
    listens with SO_REUSEPORT, a new one could bind beside it and silently share the load.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_nginx(
    nginx: str, root: Path, certificate: CertificateFiles, workers: int, run_dir: Path
) -> tuple[ServerProcess, int]:
    """nginx serving ``root`` statically; returns the server and its port."""
    port = free_port()
    config = run_dir / "nginx.conf"
    config.write_text(
        NGINX_CONF.format(
            workers=workers,
            run_dir=run_dir,
            port=port,
            reuseport=" reuseport" if workers > 1 else "",
            certificate=certificate.certificate,
            key=certificate.key,
            root=root,
        )
    )
    # Workers drop to "nobody" when started as root: they must be able to read the files.
    for directory in (run_dir, root):
        directory.chmod(0o755)
    command = [nginx, "-p", str(run_dir), "-e", str(run_dir / "nginx-error.log"), "-c", str(config)]
    server = _spawn("nginx", command, run_dir / "nginx.log")
    _wait_for_port(server, port)
    return server, port


def start_bare_aiohttp(
    root: Path, certificate: CertificateFiles, workers: int, run_dir: Path
) -> tuple[ServerProcess, int]:
    """The bare aiohttp baseline (``bare_aiohttp.py``); returns the server and its port."""
    port = free_port()
    command = [
        sys.executable,
        str(BARE_AIOHTTP_SCRIPT),
        f"--directory={root}",
        f"--port={port}",
        f"--certificate={certificate.certificate}",
        f"--key={certificate.key}",
        f"--workers={workers}",
    ]
    server = _spawn("aiohttp", command, run_dir / "bare-aiohttp.log")
    _wait_for_ready_lines(server, workers)
    return server, port


def _spawn(name: str, command: list[str], log: Path) -> ServerProcess:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ServerProcess(name, process, log)


def _wait_for_port(server: ServerProcess, port: int) -> None:
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    _wait_until(server, accepts)


def _wait_for_ready_lines(server: ServerProcess, workers: int) -> None:
    """Wait until every worker listens, not just the first: the port answers earlier."""
    _wait_until(server, lambda: server.log.read_text().count("ready ") >= workers)


def _wait_until(server: ServerProcess, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start-up; see {server.log}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{server.name} not ready after {START_TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)
