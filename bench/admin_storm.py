"""An admin at work during a boot storm: what the phones and the admin each see.

1,000 Yealink T46U phones poll their ``<mac>.cfg`` on 64 kept-alive connections (the
tenant in legacy MAC-only mode, so wrk needs no Digest), while an admin, every
``--every`` seconds, changes the tenant's settings and lists its devices and its
outdated devices through the admin API of the same ``dls serve``. Every change is a new
revision for all 1,000 phones, so each of their next polls renders anew.

``--change valid`` reads the tenant's document and sends it back with one raw key
changed and the revision it read; ``--change breaking`` replaces it with a document
without the registrar (the mistake of a PUT that meant to change one key), which the
server refuses (422 breaks_devices) after checking a sample of the phones;
``--change forced`` sends the same with ``"force": true``, so it is stored and no
phone's file renders. Prints wrk's figures, the admin requests' latencies and statuses, and
how many warning and error lines the server logged.

    .venv/bin/python bench/admin_storm.py --change breaking
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from dls_seed import seed, set_legacy_mac_only
from dls_server import dls_command, new_instance, start_dls
from loadgen import LoadGenerator, Scenario
from tools import find_or_install

from dls.secretbox import SecretBox

_OPERATOR = re.compile(r"user (\S+)  password (\S+)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--change", choices=("valid", "breaking", "forced"), default="valid")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load")
    parser.add_argument(
        "--every",
        type=float,
        default=2.0,
        help="seconds from one round's start to the next (later if a round takes longer)",
    )
    args = parser.parse_args(argv)
    wrk = find_or_install("wrk")
    if wrk is None:
        print("admin_storm: needs wrk", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="dls-admin-storm-"))
    try:
        return _run(args, wrk, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(args: argparse.Namespace, wrk: str, root: Path) -> int:
    instance = new_instance(root, "")
    done = subprocess.run(
        dls_command("init"), cwd=root, env=instance.environment(), capture_output=True, text=True
    )
    found = _OPERATOR.search(done.stdout)
    if done.returncode or found is None:
        print(f"admin_storm: dls init failed:\n{done.stdout}\n{done.stderr}", file=sys.stderr)
        return 1
    box = SecretBox(base64.b64decode((instance.certs / "secret.key").read_bytes().strip()))
    url = instance.effective_database_url
    fleet = asyncio.run(seed(url, box, args.devices, 1))
    asyncio.run(set_legacy_mac_only(url, fleet.tenant_id, True))
    requests = root / "requests.txt"
    requests.write_text("".join(f"{p.path}\tUser-Agent: {p.user_agent}\n" for p in fleet.phones))
    server = start_dls(instance, args.workers)
    try:
        load = LoadGenerator(wrk)
        admin = asyncio.run(
            _admin_while_loaded(args, instance, fleet.tenant_id, found.groups(), load, requests)
        )
    finally:
        server.stop()
    result, latencies, statuses = admin
    print(
        f"phones: {result.requests_per_second:,.0f} req/s, p50 / p99 "
        f"{result.latency_ms['p50']:.0f} / {result.latency_ms['p99']:.0f} ms, "
        f"{result.errors.get('status', 0):,} of {result.requests:,} not 2xx/3xx"
    )
    for kind, values in latencies.items():
        print(
            f"admin {kind}: {len(values)} requests, median {statistics.median(values):.0f} ms, "
            f"max {max(values):.0f} ms, statuses {sorted(statuses[kind])}"
        )
    lines = server.log.read_text().splitlines()
    noisy = [line for line in lines if " WARNING " in line or " ERROR " in line]
    print(f"server log: {len(noisy)} warning or error lines")
    for line in noisy[:5]:
        print("  " + line[:160])
    return 0


async def _admin_while_loaded(
    args: argparse.Namespace,
    instance: Any,
    tenant: str,
    operator: tuple[str, str],
    load: LoadGenerator,
    requests: Path,
) -> tuple[Any, dict[str, list[float]], dict[str, set[int]]]:
    context = ssl.create_default_context(cafile=str(instance.ca_file))
    api = f"https://127.0.0.1:{instance.admin_port}/api/v1"
    latencies: dict[str, list[float]] = {"change": [], "list": [], "outdated": []}
    statuses: dict[str, set[int]] = {kind: set() for kind in latencies}
    async with aiohttp.ClientSession() as session:

        async def call(kind: str, method: str, path: str, body: Any = None) -> Any:
            started = time.monotonic()
            async with session.request(
                method, api + path, json=body, headers=headers, ssl=context
            ) as response:
                answer = await response.json()
            latencies[kind].append((time.monotonic() - started) * 1000)
            statuses[kind].add(response.status)
            return answer

        login = {"username": operator[0], "password": operator[1]}
        async with session.post(api + "/auth/login", json=login, ssl=context) as response:
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        loading = asyncio.create_task(
            asyncio.to_thread(
                load.run, instance.base_url + "/", requests, Scenario.KEEP_ALIVE, args.duration
            )
        )
        await asyncio.sleep(2)
        settings = f"/tenants/{tenant}/settings"
        deadline = time.monotonic() + args.duration - 3
        number = 0
        tick = time.monotonic()
        while time.monotonic() < deadline:
            number += 1
            if args.change == "valid":
                current = await call("change", "GET", settings)
                document = current["settings"]
                document.setdefault("raw", {}).setdefault("yealink", {})[
                    "phone_setting.backlight_time"
                ] = str(30 + number)
                change = {"settings": document, "revision": current["revision"]}
            else:
                raw = {"yealink": {"features.dnd.enable": str(number % 2)}}
                change = {"settings": {"raw": raw}, "force": args.change == "forced"}
            await call("change", "PUT", settings, change)
            await call("list", "GET", f"/tenants/{tenant}/devices?limit=50")
            await call("outdated", "GET", f"/tenants/{tenant}/outdated-devices?limit=50")
            # Rounds start every --every seconds whatever the admin's requests took, so
            # a faster admin API does not make more changes (and phones more renderings).
            tick += args.every
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        result = await loading
    return result, latencies, statuses


if __name__ == "__main__":
    sys.exit(main())
