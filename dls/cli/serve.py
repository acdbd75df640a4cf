"""``dls serve`` (and ``python server.py``): prepare, print where to connect, serve."""

from __future__ import annotations

import argparse
from typing import Any

from dls.config import Settings
from dls.server import Startup, prepare, run


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("serve", help="run the server (certificates and schema first)")
    parser.add_argument("--workers", type=int, help="processes sharing the ports")
    parser.add_argument("--no-mdns", action="store_true", help="do not advertise via mDNS")
    parser.add_argument(
        "--no-admin-process",
        action="store_true",
        help="serve the admin listener from the workers, not from a process of its own",
    )
    parser.add_argument("--device-port", type=int)
    parser.add_argument("--secure-port", type=int)
    parser.add_argument("--admin-port", type=int)
    parser.set_defaults(handler=handle, overrides=overrides)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        "workers": args.workers,
        "device_port": args.device_port,
        "secure_port": args.secure_port,
        "admin_port": args.admin_port,
    }
    if args.no_mdns:
        values["mdns_enabled"] = False
    if args.no_admin_process:
        values["admin_process"] = False
    return {key: value for key, value in values.items() if value is not None}


def handle(settings: Settings, args: argparse.Namespace) -> int:
    startup = prepare(settings)
    return run(settings, startup, on_ready=lambda: print(banner(settings, startup), flush=True))


def banner(settings: Settings, startup: Startup) -> str:
    host = settings.hostnames[0]
    if settings.device_client_certificates:
        bundles = len(startup.pki.vendor_ca_files())
        certificates = f"client certificate optional, {bundles} vendor CA bundle(s)"
    else:
        certificates = "no client certificate asked for"
    lines = [
        "dls is serving:",
        f"  device  https://{host}:{settings.device_port}/  (WPI, config files, firmware;"
        f" {certificates})",
        f"  secure  https://{host}:{settings.secure_port}/  (client certificate required)",
        f"  admin   https://{host}:{settings.admin_port}/api/v1/  (/healthz /readyz /metrics)",
        f"  CA      {startup.pki.ca_cert}  SHA-256 {startup.ca_sha256}",
    ]
    lines += first_operator_lines(startup)
    return "\n".join(lines)


def first_operator_lines(startup: Startup) -> list[str]:
    first = startup.first_operator
    if first is None:
        return []
    # Printed to the terminal once; never logged, stored only as an Argon2id hash.
    return [
        "First operator account (shown once, change the password after logging in):",
        f"  tenant {first.tenant_id}  user {first.username}  password {first.password}",
    ]
