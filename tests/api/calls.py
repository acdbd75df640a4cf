"""Calling the admin API as one of the world's users, and looking at what it stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from dls.api import API_PREFIX
from dls.services import Services
from dls.tenancy.models import Tenant
from dls.tickets.models import Addressee, Ticket
from tests.api.world import World

V1 = API_PREFIX


async def call(
    client: TestClient[Any, Any],
    world: World,
    caller: str,
    method: str,
    path: str,
    body: Any = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    headers = {**world.auth(caller), **kwargs.pop("headers", {})}
    response = await client.request(method, V1 + path, json=body, headers=headers, **kwargs)
    payload = await response.json() if response.content_type == "application/json" else None
    return response.status, payload


async def load(services: Services, model: type[Any], key: Any) -> Any:
    async with services.sessions() as session:
        return await session.get(model, key)


async def count(services: Services, model: type[Any]) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def change_tenant(services: Services, tenant_id: str, **values: Any) -> None:
    """Write straight to the database, past the API's input validation."""
    async with services.sessions() as session, session.begin():
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        for key, value in values.items():
            setattr(tenant, key, value)


def new_ticket_body(customer_tenant_id: str) -> dict[str, Any]:
    return {
        "customer_tenant_id": customer_tenant_id,
        "subject": "Phones reboot",
        "description": "Every hour on the hour.",
        "support_level": 3,
        "language": "de",
        "occurred_at": "2026-01-01T08:00:00+00:00",
    }


async def seed_ticket(services: Services, world: World, customer: str, partner: str) -> str:
    async with services.sessions() as session, session.begin():
        at = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
        session.add(
            Ticket(
                number="NA00000777",
                customer_tenant_id=world.tid(customer),
                partner_account_id=world.tid(partner),
                addressed_to=Addressee.RESELLER,
                subject="Phones reboot",
                description="Every hour on the hour.",
                support_level=3,
                language="de",
                company=customer,
                occurred_at=at,
                reported_at=at,
                submitter_id=world.users[f"{partner}_partner"].id,
                requester="Front desk",
            )
        )
    return "NA00000777"
