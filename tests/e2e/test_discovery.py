"""The server advertises itself over mDNS and withdraws the record when it stops."""

import asyncio
import secrets
from pathlib import Path

import pytest
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from dls import __version__
from dls.discovery import SERVICE_TYPE
from dls.pki import fingerprint
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]


async def test_advertisement_carries_the_txt_records(tmp_path: Path, database_url: str) -> None:
    instance = f"dls-test-{secrets.token_hex(4)}"
    name = f"{instance}.{SERVICE_TYPE}"
    process = ServerProcess(
        tmp_path,
        database_url,
        env={
            "DLS_MDNS_ENABLED": "true",
            "DLS_MDNS_INTERFACES": '["127.0.0.1"]',
            "DLS_MDNS_INSTANCE": instance,
        },
    )
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"])
    events: dict[ServiceStateChange, asyncio.Event] = {
        ServiceStateChange.Added: asyncio.Event(),
        ServiceStateChange.Removed: asyncio.Event(),
    }

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name == f"{instance}.{SERVICE_TYPE}" and state_change in events:
            events[state_change].set()

    browser = AsyncServiceBrowser(browser_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await process.start()
        await asyncio.wait_for(events[ServiceStateChange.Added].wait(), 15)
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        assert await info.async_request(browser_zc.zeroconf, 3000)
        assert info.port == process.device_port
        txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        assert txt == {
            "path": "/DeploymentService/LoginService",
            "secure_port": str(process.secure_port),
            "ca_sha256": fingerprint(process.ca_file).replace(":", "").lower(),
            "version": __version__,
        }
        assert await process.stop() == 0
        await asyncio.wait_for(events[ServiceStateChange.Removed].wait(), 15)
    finally:
        await process.stop()
        await browser.async_cancel()
        await browser_zc.async_close()
