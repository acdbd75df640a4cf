"""The download path in process: conditions, ranges, refusals, and the front-server mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dls import tls
from dls.app import build_device_app
from dls.db.types import utcnow
from dls.firmware import serving
from dls.firmware.engine import DeviceState, WavePlan
from dls.firmware.imports import ImportRequest, check_request
from dls.firmware.models import FirmwareImage, RolloutDevice
from dls.firmware.rollouts import create_rollout
from dls.firmware.serving import etag_of
from dls.services import Services
from tests.firmware.conftest import Fleet, import_image
from tests.firmware.test_rollouts import TARGET, request

pytestmark = pytest.mark.db

IMAGE = os.urandom(200_000)
YEALINK_AGENT = "Yealink SIP-T46U 108.86.0.90 {mac}"


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


async def stored_image(services: Services) -> FirmwareImage:
    runtime = services.firmware
    checked = check_request(
        ImportRequest("yealink", TARGET, ("T46U",)), runtime.catalog, services.catalog.lookup
    )
    async with services.sessions() as session, session.begin():
        result = await import_image(
            session, runtime.store, checked, chunks(IMAGE),
            max_size=10**9, imported_by=None, now=utcnow(),
        )  # fmt: skip
        return result.image


@pytest.fixture
async def device_client(services: Services) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_device_app(services))) as client:
        yield client


def url_for(services: Services, device_id: int, mac: str, image_id: int) -> str:
    token = services.firmware.tokens.issue(device_id, mac, image_id, time.time())
    return f"/fw/{token}/any-name.rom"


async def test_conditions_and_ranges(
    services: Services, fleet: Fleet, device_client: TestClient[Any, Any]
) -> None:
    image = await stored_image(services)
    device = await fleet.device(await fleet.tenant())
    url = url_for(services, device.id, device.mac, image.id)
    etag = etag_of(image.sha256)
    response = await device_client.head(url)
    assert response.status == 200 and response.headers["Content-Length"] == str(len(IMAGE))
    cases: list[tuple[dict[str, str], int, bytes]] = [
        ({}, 200, IMAGE),
        ({"Range": "bytes=0-0"}, 206, IMAGE[:1]),
        ({"Range": "bytes=199990-999999"}, 206, IMAGE[199990:]),
        ({"Range": "bytes=0-1,5-6"}, 200, IMAGE),  # several ranges: ignored
        ({"Range": "items=0-1"}, 200, IMAGE),  # unknown unit: ignored
        ({"Range": "bytes=9-3"}, 200, IMAGE),  # invalid: ignored
        ({"Range": "bytes=-0"}, 416, b""),
        # Positions of thousands of digits: past any file (int() refuses them: a 500)
        ({"Range": "bytes=" + "9" * 5000 + "-"}, 416, b""),
        ({"Range": "bytes=0-" + "9" * 5000}, 206, IMAGE),
        ({"Range": "bytes=-" + "9" * 5000}, 206, IMAGE),
        ({"Range": "bytes=\u0661-"}, 200, IMAGE),  # not an ASCII digit: ignored
        ({"If-Match": '"other"'}, 412, b""),
        ({"If-Match": etag, "Range": "bytes=5-9"}, 206, IMAGE[5:10]),
        ({"If-None-Match": f'W/{etag}, "x"'}, 304, b""),
        ({"Range": "bytes=10-", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200, IMAGE),
    ]
    for headers, status, body in cases:
        response = await device_client.get(url, headers=headers)
        assert (response.status, await response.read()) == (status, body), headers
        if status in (200, 206, 304):
            assert response.headers["ETag"] == etag
    last_modified = (await device_client.head(url)).headers["Last-Modified"]
    response = await device_client.get(
        url, headers={"Range": "bytes=10-", "If-Range": last_modified}
    )
    assert response.status == 206 and await response.read() == IMAGE[10:]


async def test_refusals_all_look_the_same(
    services: Services, fleet: Fleet, device_client: TestClient[Any, Any]
) -> None:
    image = await stored_image(services)
    device = await fleet.device(await fleet.tenant())
    url = url_for(services, device.id, device.mac, image.id)
    other_mac = "02fe00ffffff"
    refused = [
        (url, {"User-Agent": YEALINK_AGENT.format(mac=other_mac)}),  # another device
        (url_for(services, device.id, device.mac, image.id + 100), {}),  # no such image
        ("/fw/" + "A" * 47 + "/x.rom", {}),
        ("/fw/short/x.rom", {}),
    ]
    for target, headers in refused:
        response = await device_client.get(target, headers=headers)
        assert (response.status, await response.read()) == (404, b"not found\n"), target
    own = {"User-Agent": YEALINK_AGENT.format(mac=device.mac)}
    assert (await device_client.get(url, headers=own)).status == 200
    # The blob vanished from the store (a share not mounted): 404, logged.
    services.firmware.store.path_for(image.sha256).unlink()
    assert (await device_client.get(url)).status == 404


async def test_a_download_marks_the_device_downloading(
    services: Services, fleet: Fleet, device_client: TestClient[Any, Any]
) -> None:
    image = await stored_image(services)
    tenant = await fleet.tenant()
    device = await fleet.device(tenant)
    async with services.sessions() as session, session.begin():
        rollout = await create_rollout(
            session, request(tenant, WavePlan(100)), created_by=None, now=utcnow()
        )
    url = url_for(services, device.id, device.mac, image.id)
    assert (await device_client.head(url)).status == 200  # a HEAD is no download
    await services.firmware.downloads.flush()
    async with services.sessions() as session:
        member = await session.get(RolloutDevice, (rollout.id, device.id))
        assert member is not None and member.state is DeviceState.OFFERED
    assert (await device_client.get(url, headers={"Range": "bytes=0-9"})).status == 206
    await services.firmware.downloads.flush()
    async with services.sessions() as session:
        member = await session.get(RolloutDevice, (rollout.id, device.id))
        assert member is not None and member.state is DeviceState.DOWNLOADING
        assert member.download_started_at is not None


class TestFrontServer:
    """With ``firmware_accel_redirect`` set, dls authorises and nginx sends the bytes."""

    @pytest.fixture
    def firmware_settings(self) -> dict[str, Any]:
        return {"firmware_accel_redirect": "/_dls_firmware/"}

    async def test_the_transfer_is_handed_over(
        self, services: Services, fleet: Fleet, device_client: TestClient[Any, Any]
    ) -> None:
        image = await stored_image(services)
        device = await fleet.device(await fleet.tenant())
        url = url_for(services, device.id, device.mac, image.id)
        for method in ("GET", "HEAD"):
            response = await device_client.request(method, url)
            assert response.status == 200
            assert response.headers["X-Accel-Redirect"] == (
                f"/_dls_firmware/{image.sha256[:2]}/{image.sha256}"
            )
            assert response.headers["ETag"] == etag_of(image.sha256)
            assert await response.read() == b""
        # The location names the store's own layout: nginx's alias is the firmware_dir.
        stored = services.firmware.store.path_for(image.sha256)
        relative = stored.relative_to(services.settings.effective_firmware_dir)
        assert str(relative) == f"{image.sha256[:2]}/{image.sha256}"
        refused = await device_client.get("/fw/" + "A" * 47 + "/x.rom")
        assert refused.status == 404 and "X-Accel-Redirect" not in refused.headers


@pytest.mark.parametrize("cached", [False, True])
async def test_reads_off_the_page_cache_fall_back_to_a_thread(
    services: Services,
    fleet: Fleet,
    device_client: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    cached: bool,
) -> None:
    """A chunk the page cache does not hold (RWF_NOWAIT: EAGAIN) is read in a worker thread;
    the bytes are the same either way."""
    image = await stored_image(services)
    device = await fleet.device(await fleet.tenant())
    url = url_for(services, device.id, device.mac, image.id)
    if not cached:
        monkeypatch.setattr(serving, "_read_cached", lambda fd, size, position: (None, True))
    response = await device_client.get(url, headers={"Range": "bytes=1000-"})
    assert response.status == 206 and await response.read() == IMAGE[1000:]


class TestAClientThatStopsReading:
    @pytest.fixture
    def firmware_settings(self) -> dict[str, Any]:
        return {"send_timeout": 0.5}

    @pytest.mark.parametrize("over_tls", [True, False])
    async def test_loses_its_connection_after_send_timeout(
        self, services: Services, fleet: Fleet, over_tls: bool
    ) -> None:
        """A phone that stops taking a download holds its connection send_timeout longer,
        not for ever. Over TLS (every listener's kind), and over plain TCP, where a
        zero-copy sendfile used to wait for such a client for ever."""
        big = os.urandom(32 * 1024 * 1024)  # far more than the socket buffers hold
        runtime = services.firmware
        checked = check_request(
            ImportRequest("yealink", "108.99.0.3", ("T46U",)),
            runtime.catalog,
            services.catalog.lookup,
        )
        async with services.sessions() as session, session.begin():
            result = await import_image(
                session,
                runtime.store,
                checked,
                chunks(big),
                max_size=10**9,
                imported_by=None,
                now=utcnow(),
            )
        image = result.image
        device = await fleet.device(await fleet.tenant())
        url = url_for(services, device.id, device.mac, image.id)
        server = TestServer(build_device_app(services))
        if over_tls:
            context = tls.device_context(services.pki, client_certificates=False)
            client_context = ssl.create_default_context(cafile=str(services.pki.ca_cert))
            await server.start_server(ssl=context)
        else:
            client_context = None
            await server.start_server()
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                server.port,
                ssl=client_context,
                server_hostname="localhost" if over_tls else None,
            )
            writer.write(f"GET {url} HTTP/1.1\r\nHost: dls\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.sleep(3)  # takes nothing more, for six send_timeouts
            received = 0
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
                    received += len(chunk)
            writer.close()
            assert received < len(big)  # the rest was never sent
        finally:
            await server.close()
