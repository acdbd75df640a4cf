"""Whatever is posted to the WPI endpoint, the answer is a 4xx (or a proper 200), quickly.

Arbitrary bytes, near-miss XML, entity bombs, external entities, deep nesting, huge
attributes, UTF-16/32 and declared foreign encodings, and well-formed messages with
random reasons and items. Never a 500, never a hang: each request has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dls.app import build_device_app
from dls.config import Settings
from dls.db.engine import create_engine
from dls.db.migrate import upgrade
from dls.services import Services
from tests.conftest import in_process_services

pytestmark = pytest.mark.db

PATH = "/DeploymentService/LoginService"
NS = "http://www.siemens.com/DLS"
DEADLINE = 10.0  # seconds per request; the parser's bounds keep each one far below

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']><WorkpointMessage xmlns="'
    + NS.encode()
    + b'"><Message nonce="1">'
    b"<ReasonForContact>&lol9;</ReasonForContact></Message></WorkpointMessage>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<WorkpointMessage xmlns="' + NS.encode() + b'"><Message nonce="1">'
    b"<ReasonForContact>&xxe;</ReasonForContact></Message></WorkpointMessage>"
)
PARAMETER_ENTITY = (
    b'<!DOCTYPE x [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]><x/>'
)
DEEP = b"<a>" * 100_000 + b"</a>" * 100_000
HUGE_ATTRIBUTE = (
    b'<WorkpointMessage xmlns="' + NS.encode() + b'"><Message nonce="' + b"N" * 900_000 + b'">'
    b"<ReasonForContact>start-up</ReasonForContact></Message></WorkpointMessage>"
)
UTF16 = ('<?xml version="1.0" encoding="UTF-16"?><WorkpointMessage xmlns="' + NS + '"/>').encode(
    "utf-16"
)
LATIN1 = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?><WorkpointMessage xmlns="'
    + NS.encode()
    + b'"><Message nonce="\xe9"/></WorkpointMessage>'
)
MALICIOUS = [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY, DEEP, HUGE_ATTRIBUTE, UTF16, LATIN1]

REASONS = st.sampled_from(
    [
        "start-up",
        "solicited",
        "reply-to",
        "local-changes",
        "inventory-changes",
        "status",
        "clean-up",
        "",
        "x" * 70,
        "&amp;",
        "start-up\x00",
    ]
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@st.composite
def messages(draw: Callable[..., Any]) -> bytes:
    """Well-formed or nearly: a WorkpointMessage with drawn reason, attributes and items."""
    nonce = draw(st.one_of(st.just("A" * 32), TEXT))
    reason = draw(REASONS)
    action = draw(st.one_of(st.none(), st.sampled_from(["ReadAllItems", "WriteItems", "Bogus"])))
    status = draw(st.one_of(st.none(), st.sampled_from(["accepted", "busy", "failed", "?"])))
    items = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(["mac-addr", "cloud-pin-value", "contact-me-uri"]), TEXT),
                st.one_of(st.none(), st.integers(-5, 10**7).map(str), TEXT),
                TEXT,
            ),
            max_size=8,
        )
    )
    attributes = "".join(
        f' {name}="{_escape(value)}"'
        for name, value in (("action", action), ("status", status))
        if value is not None
    )
    body = "".join(
        f'<Item name="{_escape(name)}"'
        + (f' index="{_escape(index)}"' if index is not None else "")
        + f">{_escape(value)}</Item>"
        for name, index, value in items
    )
    fragment = draw(st.sampled_from(["", ' fragment="next"', ' fragment="final"', ' fragment="x"']))
    text = (
        f'<WorkpointMessage xmlns="{NS}"><Message nonce="{_escape(nonce)}"{fragment}>'
        f"<ReasonForContact{attributes}>{_escape(reason)}</ReasonForContact>"
        f"<ItemList>{body}</ItemList></Message></WorkpointMessage>"
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return b"\xff"


BODIES = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(lambda t: t.encode("utf-8", "replace")),
    st.sampled_from(MALICIOUS),
    messages(),
)


class _Harness:
    def __init__(self, client: TestClient[Any, Any], services: Services) -> None:
        self.client = client
        self.services = services

    @classmethod
    async def start(cls, settings: Settings, database: Path) -> _Harness:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        await upgrade(engine)
        services = in_process_services(settings, engine)
        client: TestClient[Any, Any] = TestClient(TestServer(build_device_app(services)))
        await client.start_server()
        return cls(client, services)

    async def post(self, body: bytes, content_type: str, cookie: str | None) -> int:
        headers = {"Content-Type": content_type}
        if cookie is not None:
            headers["Cookie"] = f"JSESSIONID={cookie}"
        async with self.client.post(PATH, data=body, headers=headers) as response:
            await response.read()
            return response.status

    async def close(self) -> None:
        await self.client.close()
        await self.services.reads.dispose()
        await self.services.engine.dispose()


def test_the_endpoint_never_fails_with_500_or_hangs(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    loop = asyncio.new_event_loop()
    harness = loop.run_until_complete(_Harness.start(make_settings(), tmp_path / "fuzz.sqlite3"))
    try:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            body=BODIES,
            content_type=st.sampled_from(
                ["text/xml", "text/xml; charset=utf-8", "application/xml"]
            ),
            cookie=st.one_of(st.none(), st.text("abcXYZ019_-", min_size=16, max_size=40)),
        )
        def check(body: bytes, content_type: str, cookie: str | None) -> None:
            status = loop.run_until_complete(
                asyncio.wait_for(harness.post(body, content_type, cookie), DEADLINE)
            )
            assert status == 200 or 400 <= status < 500, status

        check()
        for body in MALICIOUS:
            status = loop.run_until_complete(
                asyncio.wait_for(harness.post(body, "text/xml", None), DEADLINE)
            )
            assert 400 <= status < 500
    finally:
        loop.run_until_complete(harness.close())
        loop.close()
