"""``dls secrets rotate-key``: re-encrypt every secret at rest under a new key."""

from __future__ import annotations

import argparse
import sys

from dls.config import Settings
from dls.db.engine import create_engine, session_factory
from dls.rotation import rotate_key_file
from dls.server import run_async


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("secrets", help="secrets at rest")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "rotate-key", help="new key in certs/secret.key; stop the servers first"
    ).set_defaults(handler=rotate)


def rotate(settings: Settings, args: argparse.Namespace) -> int:
    if settings.secret_key is not None:
        print(
            "dls: the key comes from DLS_SECRET_KEY; rotation works on certs/secret.key. "
            "Unset DLS_SECRET_KEY and put the current key in certs/secret.key first.",
            file=sys.stderr,
        )
        return 2

    async def go() -> tuple[str, str, int]:
        engine = create_engine(settings.effective_database_url)
        try:
            return await rotate_key_file(session_factory(engine), settings.certs_dir)
        finally:
            await engine.dispose()

    result: list[tuple[str, str, int]] = []

    async def run() -> None:
        result.append(await go())

    try:
        run_async(run())
    except RuntimeError as exc:
        print(f"dls: {exc}", file=sys.stderr)
        return 2
    old, new, count = result[0]
    print(f"re-encrypted {count} secrets: key {old} -> {new}; old key kept as secret.key.old")
    return 0
