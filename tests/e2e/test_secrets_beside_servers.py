"""``dls secrets rotate-key`` and a running ``dls serve`` on one database: one waits for
the other, instead of the server going on with a key that opens nothing any more."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from dls.db.engine import create_engine
from dls.db.serving import alone
from dls.secretbox import KEY_FILE, PENDING_KEY_FILE
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]


async def _dls(server: ServerProcess, *command: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "DLS_DATA_DIR": str(server.root / "var"),
        "DLS_CERTS_DIR": str(server.certs),
        "DLS_DATABASE_URL": server.database_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dls",
        *command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_key_rotation_is_refused_while_a_server_serves(server: ServerProcess) -> None:
    key = (server.certs / KEY_FILE).read_bytes()
    code, output = await _dls(server, "secrets", "rotate-key")
    assert code == 2, output
    assert "dls servers are serving from this database; stop every one of them first" in output
    assert (server.certs / KEY_FILE).read_bytes() == key
    assert not (server.certs / PENDING_KEY_FILE).exists()
    code, output = await _dls(server, "secrets", "forget-lost", "--yes")
    assert code == 2 and "stop every one of them first" in output, output
    assert await server._healthy()

    assert await server.stop() == 0
    code, output = await _dls(server, "secrets", "rotate-key")
    assert code == 0 and "re-encrypted" in output, output
    assert (server.certs / KEY_FILE).read_bytes() != key
    await server.start()  # under the new key: the start's key check passes


async def test_a_server_does_not_start_while_a_rotation_runs(server: ServerProcess) -> None:
    assert await server.stop() == 0
    engine = create_engine(server.database_url)
    try:
        async with alone(engine):
            with pytest.raises(RuntimeError, match="server exited 1"):
                await server.start()
    finally:
        await engine.dispose()
    assert "is changing the database's secrets; start the server again" in server.output()
    await server.start()  # once it has finished
