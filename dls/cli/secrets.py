"""``dls secrets rotate-key``: re-encrypt every secret at rest under a new key;
``dls secrets forget-lost``: remove those no key at hand opens."""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys

from dls.config import Settings
from dls.db.engine import WRITER, create_engine, session_factory
from dls.db.serving import alone
from dls.rotation import forget_unopenable, rotate_key_file
from dls.secretbox import KEY_FILE, PENDING_KEY_FILE, SecretBox, load_secret_box
from dls.server import run_async


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("secrets", help="secrets at rest")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "rotate-key", help="new key in certs/secret.key; stop the servers first"
    ).set_defaults(handler=rotate)
    forget = actions.add_parser(
        "forget-lost",
        help="remove the secrets the configured key cannot open (their key is lost); "
        "admins set them again. Stop the servers first",
    )
    forget.add_argument("--yes", action="store_true", help="remove them; without: count them")
    forget.set_defaults(handler=forget_lost)


def forget_lost(settings: Settings, args: argparse.Namespace) -> int:
    """For a key lost for good: the start refuses a database whose secrets the configured
    key cannot open, and this is the way out. Counts first; removes with ``--yes``."""
    pending = settings.certs_dir / PENDING_KEY_FILE
    if pending.exists():
        print(
            f"dls: {pending} exists: a key rotation did not finish, and it may hold the "
            "key these secrets need. Finish the rotation (dls secrets rotate-key says how).",
            file=sys.stderr,
        )
        return 2
    key_file = settings.certs_dir / KEY_FILE
    if args.yes or settings.secret_key is not None or key_file.exists():
        box = load_secret_box(settings)  # made if missing: the key they will be set under
    else:
        box = SecretBox(secrets.token_bytes(32))  # only counting: no key file made yet
    counts: list[dict[str, int]] = []

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if args.yes:  # counting changes nothing a server holds
                    await stack.enter_async_context(alone(engine))
                async with session_factory(engine)() as session:
                    await session.connection(execution_options=WRITER)
                    counts.append(await forget_unopenable(session, box))
                    if args.yes:
                        await session.commit()  # else closing the session rolls it back
        finally:
            await engine.dispose()

    run_async(run())
    found = ", ".join(f"{count} {what}" for what, count in counts[0].items())
    if not args.yes:
        print(f"no key at hand opens {found}; run again with --yes to remove them")
        return 1 if any(counts[0].values()) else 0
    print(f"removed {found}; set them again: they will be under key {box.key_id}")
    return 0


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
            return await rotate_key_file(engine, settings.certs_dir)
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
