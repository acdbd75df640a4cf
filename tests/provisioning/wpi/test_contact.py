"""Contact-me: the SSRF guard on the phone's URI, and the bounded sender."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dls.provisioning.wpi.contact import ContactRefused, ContactSender, contact_target


@pytest.mark.parametrize(
    ("uri", "source", "expected"),
    [
        (
            "http://10.0.20.31:8085/contact_dls.html/ContactDLS",
            "10.0.20.31",
            "http://10.0.20.31:8085/contact_dls.html/ContactDLS",
        ),
        (
            "http://10.0.20.31:8085",
            "10.0.20.31",
            "http://10.0.20.31:8085/contact_dls.html/ContactDLS",
        ),
        ("http://10.0.20.31/x", "::ffff:10.0.20.31", "http://10.0.20.31:80/x"),
        ("http://[fe80::1]:8085/c", "fe80::1", "http://[fe80::1]:8085/c"),
    ],
)
def test_the_phone_itself_is_contacted(uri: str, source: str, expected: str) -> None:
    assert contact_target(uri, source) == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://10.0.20.99:8085/c", "another host"),
        ("http://169.254.169.254/latest/meta-data", "another host"),
        ("http://phone.example.net:8085/c", "not an IP address"),
        ("https://10.0.20.31/c", "not plain http"),
        ("file:///etc/passwd", "not an IP address"),
        ("http://user:pw@10.0.20.31/c", "user info"),
        ("http://10.0.20.31/c\r\nX: y", "malformed"),
        ("", "no usable"),
        ("http://10.0.20.31/" + "a" * 300, "no usable"),
    ],
)
def test_anything_else_is_refused(uri: str, reason: str) -> None:
    with pytest.raises(ContactRefused, match=reason):
        contact_target(uri, "10.0.20.31")


async def _phone(answers: list[int], seen: list[dict[str, Any]]) -> TestServer:
    async def contact(request: web.Request) -> web.Response:
        seen.append({"body": await request.text(), "type": request.content_type})
        status = answers.pop(0) if answers else 204
        if status == 302:
            raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/contact_dls.html/ContactDLS", contact)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_contact_posts_the_form_and_retries_on_errors() -> None:
    seen: list[dict[str, Any]] = []
    server = await _phone([503, 204], seen)
    sender = ContactSender(backoff=0.01)
    await sender.start()
    try:
        url = str(server.make_url("/contact_dls.html/ContactDLS"))
        assert await sender.contact(url, "10.0.0.5", 18443)
        assert seen[-1] == {
            "body": "ContactMe=true&dls_ip_addr=10.0.0.5&dls_ip_port=18443",
            "type": "application/x-www-form-urlencoded",
        }
        assert len(seen) == 2
    finally:
        await sender.close()
        await server.close()


async def test_refusals_and_redirects_are_not_retried_nor_followed() -> None:
    seen: list[dict[str, Any]] = []
    server = await _phone([403, 302], seen)
    sender = ContactSender(backoff=0.01)
    await sender.start()
    try:
        url = str(server.make_url("/contact_dls.html/ContactDLS"))
        assert not await sender.contact(url, None, 18443)
        assert not await sender.contact(url, None, 18443)
        assert len(seen) == 2 and seen[0]["body"] == "ContactMe=true"
        assert not await sender.contact("http://127.0.0.1:9/unreachable", None, 18443)
    finally:
        await sender.close()
        await server.close()
