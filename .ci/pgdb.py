"""Create or drop one PostgreSQL database for a CI run: ``pgdb.py create|drop URL NAME``."""

import asyncio
import re
import sys

import asyncpg


async def main(action: str, url: str, name: str) -> None:
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise SystemExit(f"bad database name {name!r}")
    connection = await asyncpg.connect(url, timeout=10)
    try:
        if action == "create":
            await connection.execute(f'CREATE DATABASE "{name}"')
        else:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:4]))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"pgdb: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
