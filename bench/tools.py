"""Find the external programs the benchmark needs, installing them with apt-get if allowed.

A missing tool should cost one clear line, not a traceback: without nginx the run still
gives the aiohttp baseline and the target; only wrk is indispensable.
"""

from __future__ import annotations

import os
import shutil
import subprocess

DEBIAN_PACKAGES = {"nginx": "nginx", "wrk": "wrk", "cc": "gcc"}


def find_or_install(binary: str) -> str | None:
    """Path of ``binary``, installing its Debian package if missing; None if neither works."""
    found = _which(binary)
    if found:
        return found
    package = DEBIAN_PACKAGES.get(binary, binary)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"bench: {binary} not found; install it with: apt-get install {package}")
        return None
    print(f"bench: {binary} not found; installing {package} with apt-get ...", flush=True)
    if not _apt_install(package):
        # The package lists may be missing or stale; refresh them once and retry.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        if not _apt_install(package, report=True):
            return None
    return _which(binary)


def _apt_install(package: str, report: bool = False) -> bool:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode and report:
        print(f"bench: could not install {package}: {done.stderr.strip()[-500:]}")
    return done.returncode == 0


def _which(binary: str) -> str | None:
    # nginx lives in /usr/sbin, which is not on a non-root user's PATH.
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
