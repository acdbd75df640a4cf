"""The ``dls`` command. Each sub-command lives in a module of its own and registers itself."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import make_url

from dls import __version__, logs
from dls.cli import certs, config, database, firmware, init, secrets, serve, tenancy
from dls.config import ConfigError, Settings, load_settings, unknown_variables
from dls.db.unavailable import connection_failure

__all__ = ["main"]

COMMANDS = (serve, init, database, certs, config, secrets, tenancy, firmware)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dls", description="Provisioning server for phones")
    parser.add_argument("--version", action="version", version=f"dls {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = getattr(args, "overrides", lambda a: {})(args)
    try:
        settings: Settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"dls: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    for line in unknown_variables(os.environ):
        logging.getLogger("dls.config").warning(line)
    try:
        return int(args.handler(settings, args) or 0)
    except ConfigError as exc:
        print(f"dls: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        reason = connection_failure(exc)
        if reason is None:
            raise
        # Not a bug: the database is down, or the URL names nothing there. One line,
        # with the URL as given (its password hidden), instead of a driver's traceback.
        url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        print(f"dls: cannot connect to the database {url}: {reason}", file=sys.stderr)
        return 1
