"""The README's curl walk-through, step by step, against the real server over TLS."""

import re
from typing import Any

import aiohttp
import pytest

from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db]


class Admin:
    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.context = server.ssl_context()

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        expect: int = 200,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method,
            self.server.url("admin", "/api/v1" + path),
            json=body,
            headers=headers,
            ssl=self.context,
        ) as response:
            payload = await response.json() if response.status != 204 else None
            assert response.status == expect, payload
            return payload

    async def login(self, username: str, password: str) -> str:
        answer = await self.call(
            "POST",
            "/auth/login",
            body={
                "username": username,
                "password": password,
            },
        )
        return str(answer["token"])


async def test_readme_walkthrough(server: ServerProcess) -> None:
    banner = re.search(r"user (\S+)  password (\S+)", server.output())
    assert banner is not None, server.output()
    async with aiohttp.ClientSession() as session:
        api = Admin(server, session)
        op = await api.login(banner[1], banner[2])

        reseller = (
            await api.call(
                "POST",
                "/tenants",
                op,
                {
                    "kind": "reseller",
                    "name": "Alpha Reseller",
                    "country": "DE",
                    "eu": True,
                },
                expect=201,
            )
        )["tenant_id"]
        await api.call(
            "PUT", f"/tenants/{reseller}/partner-ids", op, {"partner_admin_id": "ALPHA00001"}
        )
        await api.call("PUT", f"/tenants/{reseller}/reseller-role", op, {"enabled": True})
        await api.call(
            "POST",
            f"/tenants/{reseller}/users",
            op,
            {
                "username": "pat@alpha",
                "role": "partner_admin",
                "paid": True,
                "password": "partner-password-1",
            },
            expect=201,
        )

        order = {
            "order_id": "ORD-1001",
            "name": "Customer One",
            "country": "DE",
            "eu": True,
            "reseller_partner_id": "ALPHA00001",
        }
        first = await api.call("POST", "/orders", op, order)
        again = await api.call("POST", "/orders", op, order)
        assert first["created"] is True and again["created"] is False
        customer = first["tenant"]["tenant_id"]
        assert again["tenant"]["tenant_id"] == customer
        await api.call(
            "POST",
            f"/tenants/{customer}/users",
            op,
            {
                "username": "ann@customer",
                "role": "tenant_admin",
                "password": "customer-password-1",
            },
            expect=201,
        )

        ann = await api.login("ann@customer", "customer-password-1")
        pat = await api.login("pat@alpha", "partner-password-1")
        # Linked but not opted in: the partner sees the customer in the picker, cannot manage.
        picker = await api.call("GET", "/partner/tenants?q=Customer", pat)
        assert [(e["tenant_id"], e["manageable"]) for e in picker["items"]] == [(customer, False)]
        await api.call("GET", f"/tenants/{customer}", pat, expect=404)

        for direction in ("outgoing", "incoming"):
            await api.call(
                "POST",
                f"/tenants/{customer}/dpas",
                ann,
                {
                    "counterparty_tenant_id": reseller,
                    "direction": direction,
                    "signed_on": "2026-11-01",
                },
                expect=201,
            )
        await api.call("PUT", f"/tenants/{customer}/partner-access", ann, {"enabled": True})

        picker = await api.call("GET", "/partner/tenants?q=Customer", pat)
        assert picker["items"][0]["manageable"] is True
        await api.call("PATCH", f"/tenants/{customer}", pat, {"self_setup_allowed": False})

        for reader, path in ((ann, f"/tenants/{customer}/audit"), (pat, "/audit")):
            entry = (await api.call("GET", path, reader))["items"][0]
            assert entry["via"] == "partner"
            assert entry["action"] == "tenant.update"
            assert entry["target_tenant_id"] == customer
            assert entry["changes"] == {"self_setup_allowed": {"old": True, "new": False}}

        # The customer switches the partner off: the partner's next request is refused.
        await api.call("PUT", f"/tenants/{customer}/partner-access", ann, {"enabled": False})
        await api.call("PATCH", f"/tenants/{customer}", pat, {"name": "x"}, expect=404)
