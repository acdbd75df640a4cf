"""Runs the real server, ``python -m dls serve``, in a subprocess on free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

STARTUP_TIMEOUT = 60.0  # seconds; first start generates keys and runs every migration
STOP_TIMEOUT = 30.0  # seconds; the server's own shutdown_timeout is 10
BANNER = b"dls is serving:"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    root: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    device_port: int = field(default_factory=free_port)
    secure_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def ca_file(self) -> Path:
        return self.certs / "ca.pem"

    def url(self, listener: str, path: str) -> str:
        port = {"device": self.device_port, "secure": self.secure_port, "admin": self.admin_port}
        return f"https://localhost:{port[listener]}{path}"

    def ssl_context(
        self, client_cert: Path | None = None, client_key: Path | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client_cert is not None:
            context.load_cert_chain(client_cert, client_key)
        return context

    def children(self) -> list[int]:
        """The server's child processes, multiprocessing's resource tracker aside: its
        workers and admin process (none when it runs in one process)."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return sorted(
            int(child)
            for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
        )

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self) -> None:
        env = {
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
            **self.env,
        }
        # The server prints its banner once every listener accepts connections (the
        # workers and the admin process start apart); a restart appends to the same log.
        started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dls",
                "serve",
                *self.args,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.output()}")
            announced = BANNER in self.log_path.read_bytes()[started_at:]
            if announced and self.ca_file.exists() and await self._healthy():
                return
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"server did not come up:\n{self.output()}")

    async def _healthy(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    self.url("admin", "/healthz"),
                    ssl=self.ssl_context(),
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError):
            return False

    async def stop(self) -> int:
        """SIGTERM, then SIGKILL if it is still running after STOP_TIMEOUT; the exit code."""
        if self.process is None:
            return 0
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            return -signal.SIGKILL
