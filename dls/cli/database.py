"""``dls db upgrade|current``: the schema is created and changed only by migrations."""

from __future__ import annotations

import argparse

from dls.config import Settings, make_directory
from dls.db.engine import create_engine
from dls.db.migrate import current_revision, head_revision, upgrade
from dls.server import run_async


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("db", help="database schema")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("upgrade", help="apply all migrations").set_defaults(handler=do_upgrade)
    actions.add_parser("current", help="show the applied revision").set_defaults(handler=do_current)


def do_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    make_directory(settings.data_dir, "data_dir")

    async def go() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            await upgrade(engine)
            print(f"database at revision {await current_revision(engine)}")
        finally:
            await engine.dispose()

    run_async(go())
    return 0


def do_current(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            print(f"current {await current_revision(engine)} head {head_revision()}")
        finally:
            await engine.dispose()

    run_async(go())
    return 0
