from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess


@pytest.fixture
async def server(tmp_path: Path, database_url: str) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path, database_url)
    await process.start()
    yield process
    await process.stop()
