"""``dls init``: certificates, schema and the first operator, without serving."""

from __future__ import annotations

import argparse

from dls.cli.serve import first_operator_lines
from dls.config import Settings
from dls.server import prepare


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("init", help="create certificates, schema and first operator")
    parser.set_defaults(handler=handle)


def handle(settings: Settings, args: argparse.Namespace) -> int:
    startup = prepare(settings)
    print(f"CA {startup.pki.ca_cert} SHA-256 {startup.ca_sha256}")
    print("\n".join(first_operator_lines(startup)) or "already initialised; no new operator")
    return 0
