"""What writing the provisioning ledger costs the event loop, per fetch recorded.

A poll only appends its fetch to the ledger's buffer; a background task writes the
buffer every second (``dls.provisioning.ledger``). That task shares the event loop with
the polls, so its CPU on the loop's thread is CPU the polls do not get. This seeds a
fleet the way ``dls_files.py`` does, then, round after round, buffers one fetch per
device and times ``Ledger.flush()`` as the server runs it (with its ``WriteBursts``):

- **loop**: CPU of the event loop's thread during the flush (``time.thread_time``);
- **process**: CPU of the whole process, the SQLite writer thread included.

On PostgreSQL the database's own work runs in its server processes, counted in neither.

    .venv/bin/python bench/ledger_flush.py --devices 1000 --rounds 30
    .venv/bin/python bench/ledger_flush.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/NAME
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dls_seed import seed
from dls_server import init, new_instance
from sqlalchemy import select

from dls.db.engine import create_engine, session_factory
from dls.db.writes import WriteBursts
from dls.devices.models import Device
from dls.provisioning.ledger import Fetch, Ledger
from dls.secretbox import SecretBox

USER_AGENT = "Yealink SIP-T46U 108.86.0.90 80:5e:c0:00:00:01"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000, help="phones seeded")
    parser.add_argument("--rounds", type=int, default=30, help="flushes timed; medians")
    parser.add_argument(
        "--database-url",
        default="",
        help="an empty database to use (default: SQLite in a temporary directory)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dls-ledger-flush-") as root:
        url = args.database_url or f"sqlite+aiosqlite:///{root}/var/dls.sqlite3"
        instance = new_instance(Path(root), url)
        init(instance)
        box = SecretBox(base64.b64decode((instance.certs / "secret.key").read_bytes().strip()))
        asyncio.run(seed(url, box, args.devices))
        loop_us, process_us = asyncio.run(measure(url, args.rounds))
    per_fetch = 1e6 / args.devices
    print(
        f"ledger flush, {args.devices:,} fetches a round, {args.rounds} rounds, "
        f"{url.split(':', 1)[0]}: CPU per fetch recorded, median (min-max)"
    )
    for name, values in (("event loop", loop_us), ("whole process", process_us)):
        shown = [value * per_fetch for value in values]
        print(f"  {name:14} {statistics.median(shown):6.1f} us ({min(shown):.1f}-{max(shown):.1f})")
    return 0


async def measure(url: str, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of CPU per round: the loop's thread, and the process's."""
    engine = create_engine(url)
    writes = WriteBursts(engine)
    ledger = Ledger(session_factory(engine), writes)
    try:
        async with engine.connect() as connection:
            ids = list(await connection.scalars(select(Device.id)))
        loop_s, process_s = [], []
        for _ in range(rounds):
            at = dt.datetime.now(dt.UTC)
            for device_id in ids:
                ledger.fetched(
                    Fetch(
                        device_id,
                        f"{device_id:012x}.cfg",
                        "ab" * 32,
                        "0.1.0.1.0-1",
                        at,
                        "192.0.2.7",
                        USER_AGENT,
                        "108.86.0.90",
                    )
                )
            thread, process = time.thread_time(), time.process_time()
            await ledger.flush()
            loop_s.append(time.thread_time() - thread)
            process_s.append(time.process_time() - process)
        return loop_s, process_s
    finally:
        writes.dispose()
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
