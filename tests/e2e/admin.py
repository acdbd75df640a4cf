"""A small admin-API client for end-to-end tests: what an admin does, one call each.

The first operator's credentials come from the server's start-up banner; everything else
goes through ``/api/v1`` over TLS, as a script or the console would.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from tests.e2e.server import ServerProcess

API = "/api/v1"
POLL_INTERVAL = 0.1  # seconds between looks while waiting for the ledger flush
T = TypeVar("T")
_BANNER = re.compile(r"user (\S+)  password (\S+)")


def operator_credentials(server: ServerProcess) -> tuple[str, str]:
    """User name and password of the first operator, from the server's output."""
    banner = _BANNER.search(server.output())
    assert banner is not None, server.output()
    return banner[1], banner[2]


class AdminClient:
    """Calls the admin API as one user; ``call`` asserts the status it expects."""

    def __init__(
        self, server: ServerProcess, session: aiohttp.ClientSession, token: str | None = None
    ) -> None:
        self.server = server
        self.session = session
        self.token = token
        self._context = server.ssl_context()

    @classmethod
    async def operator(cls, server: ServerProcess, session: aiohttp.ClientSession) -> AdminClient:
        """Logged in as the first operator."""
        admin = cls(server, session)
        admin.token = await admin.login(*operator_credentials(server))
        return admin

    def as_token(self, token: str) -> AdminClient:
        """The same client acting as another user."""
        return AdminClient(self.server, self.session, token)

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method,
            self.server.url("admin", API + path),
            json=body,
            headers=headers,
            ssl=self._context,
        ) as response:
            payload = await response.json() if response.status != 204 else None
            assert response.status == expect, (method, path, response.status, payload)
            return payload

    async def login(self, username: str, password: str) -> str:
        answer = await self.call(
            "POST", "/auth/login", {"username": username, "password": password}
        )
        return str(answer["token"])

    # --- tenants and users -------------------------------------------------------------

    async def create_tenant(
        self, name: str, kind: str = "customer", country: str = "DE", eu: bool = True
    ) -> str:
        body = {"kind": kind, "name": name, "country": country, "eu": eu}
        return str((await self.call("POST", "/tenants", body, expect=201))["tenant_id"])

    async def update_tenant(self, tenant_id: str, **values: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("PATCH", f"/tenants/{tenant_id}", values)
        return result

    async def create_user(
        self, tenant_id: str, username: str, role: str = "user", password: str | None = None
    ) -> int:
        body: dict[str, Any] = {"username": username, "role": role}
        if password is not None:
            body["password"] = password
        user = await self.call("POST", f"/tenants/{tenant_id}/users", body, expect=201)
        return int(user["id"])

    # --- devices -------------------------------------------------------------------------

    async def create_device(
        self,
        tenant_id: str,
        mac: str,
        vendor: str,
        model: str,
        user_id: int | None = None,
        user_line: int = 1,
    ) -> dict[str, Any]:
        body = {
            "mac": mac,
            "vendor": vendor,
            "model": model,
            "user_id": user_id,
            "user_line": user_line,
        }
        device: dict[str, Any] = await self.call(
            "POST", f"/tenants/{tenant_id}/devices", body, expect=201
        )
        return device

    async def device(self, tenant_id: str, device_id: int) -> dict[str, Any]:
        device: dict[str, Any] = await self.call("GET", f"/tenants/{tenant_id}/devices/{device_id}")
        return device

    async def set_digest_credentials(
        self, tenant_id: str, device_id: int, password: str | None = None
    ) -> tuple[str, str]:
        """(user name, password); the password is shown this once."""
        body = {} if password is None else {"password": password}
        answer = await self.call(
            "POST", f"/tenants/{tenant_id}/devices/{device_id}/digest-credentials", body
        )
        return str(answer["username"]), str(answer["password"])

    async def issue_client_certificate(self, tenant_id: str, device_id: int) -> dict[str, Any]:
        """Certificate, key (shown this once) and CA, PEM."""
        issued: dict[str, Any] = await self.call(
            "POST", f"/tenants/{tenant_id}/devices/{device_id}/client-certificate", expect=201
        )
        return issued

    async def put_settings(
        self, tenant_id: str, settings: dict[str, Any], level: str = "", key: int | None = None
    ) -> dict[str, Any]:
        """PUT a sparse settings document at the tenant (``level`` empty), or at
        ``level`` "users", "devices" or "groups" with that object's id as ``key``."""
        path = f"/tenants/{tenant_id}" + (f"/{level}/{key}" if level else "") + "/settings"
        answer: dict[str, Any] = await self.call("PUT", path, {"settings": settings})
        return answer

    async def effective_config(self, tenant_id: str, device_id: int) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call(
            "GET", f"/tenants/{tenant_id}/devices/{device_id}/effective-config"
        )
        return answer

    async def unclaimed(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """Unclaimed devices (operator), first page."""
        query = f"?vendor={vendor}" if vendor else ""
        answer = await self.call("GET", f"/unclaimed-devices{query}")
        return list(answer["items"])

    async def claim(
        self, tenant_id: str, mac: str, model: str | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"mac": mac, "user_id": user_id}
        if model is not None:
            body["model"] = model
        device: dict[str, Any] = await self.call(
            "POST", f"/tenants/{tenant_id}/devices/claim", body, expect=201
        )
        return device


async def eventually(
    look: Callable[[], Awaitable[T]], until: Callable[[T], bool], within: float = 5.0
) -> T:
    """Call ``look`` until its result satisfies ``until``, for up to ``within`` seconds
    (the ledger flushes every second); the result. Fails with the last result."""
    deadline = time.monotonic() + within
    while True:
        result = await look()
        if until(result):
            return result
        assert time.monotonic() < deadline, f"still {result!r} after {within} s"
        await asyncio.sleep(POLL_INTERVAL)
