"""Start and stop a real ``dls serve`` for the benchmark, as tests/e2e/server.py does.

The server gets a root directory of its own (``var/`` and ``certs/``), free loopback
ports, mDNS off and the database URL it is given; everything else is dls's defaults
(access log on, INFO level), so the figures are those of a default deployment. It runs in
its own session, so stopping it signals its process group (the supervisor and its
workers) and nothing else.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from servers import ServerProcess, free_port

START_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class DlsInstance:
    """Where the server keeps its files and listens."""

    root: Path
    database_url: str
    device_port: int
    admin_port: int
    secure_port: int

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_file(self) -> Path:
        return self.certs / "ca.pem"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.device_port}"

    @property
    def sqlite_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.root / 'var' / 'dls.sqlite3'}"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or self.sqlite_url

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "DLS_DATA_DIR": str(self.root / "var"),
            "DLS_CERTS_DIR": str(self.certs),
            "DLS_DATABASE_URL": self.database_url,
            "DLS_DEVICE_BIND": "127.0.0.1",
            "DLS_ADMIN_BIND": "127.0.0.1",
            "DLS_DEVICE_PORT": str(self.device_port),
            "DLS_SECURE_PORT": str(self.secure_port),
            "DLS_ADMIN_PORT": str(self.admin_port),
            "DLS_MDNS_ENABLED": "false",
            **(extra or {}),
        }


def new_instance(root: Path, database_url: str) -> DlsInstance:
    root.mkdir(parents=True, exist_ok=True)
    return DlsInstance(root, database_url, free_port(), free_port(), free_port())


def sibling(instance: DlsInstance) -> DlsInstance:
    """Another server on the same files and database, on ports of its own."""
    return dataclasses.replace(
        instance, device_port=free_port(), admin_port=free_port(), secure_port=free_port()
    )


def dls_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dls", *args]


def init(instance: DlsInstance) -> None:
    """``dls init``: certificates, secret key, schema (all migrations), first operator."""
    done = subprocess.run(
        dls_command("init"),
        cwd=instance.root,
        env=instance.environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"dls init failed:\n{done.stdout}\n{done.stderr}")


def start_dls(
    instance: DlsInstance,
    workers: int,
    extra_env: dict[str, str] | None = None,
    name: str = "dls",
) -> ServerProcess:
    """``dls serve --workers N --no-mdns``; returns once every listener accepts
    connections (the server prints its banner then) and the device listener answers."""
    command = dls_command("serve", f"--workers={workers}", "--no-mdns")
    log = instance.root / f"serve-{name}-{time.strftime('%H%M%S')}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=instance.root,
            env=instance.environment(extra_env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(name, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while b"dls is serving:" not in log.read_bytes() or not _healthy(instance):
        if server.process.poll() is not None:
            raise RuntimeError(f"dls exited at start-up; see {log}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"dls not ready after {START_TIMEOUT_S} s; see {log}")
        time.sleep(POLL_INTERVAL_S)
    return server


def _healthy(instance: DlsInstance) -> bool:
    if not instance.ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(instance.ca_file))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", instance.device_port, context=context, timeout=2
    )
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    finally:
        connection.close()
