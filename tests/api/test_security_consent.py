"""Partner access is decided afresh on every request (reference §9): a consent switched off,
a DPA withdrawn, a role or link removed, or consent expiring at its second denies the
very next request of a token that was allowed the one before."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

import dls.db.types
from dls.services import Services
from dls.tenancy.models import Dpa
from tests.api.calls import call
from tests.api.world import World

pytestmark = pytest.mark.db


# --- consent: re-decided on every request -------------------------------------------------


async def test_switching_partner_access_off_denies_the_very_next_request(
    client: TestClient[Any, Any], world: World
) -> None:
    customer = world.tid("opted_in")
    status, _ = await call(client, world, "alpha_partner", "GET", f"/tenants/{customer}/users")
    assert status == 200

    status, body = await call(
        client,
        world,
        "opted_in_admin",
        "PUT",
        f"/tenants/{customer}/partner-access",
        {"enabled": False},
    )
    assert (status, body["active"]) == (200, False)

    for method, path, payload in (
        ("GET", f"/tenants/{customer}/users", None),
        ("GET", f"/tenants/{customer}", None),
        ("PATCH", f"/tenants/{customer}", {"self_setup_allowed": False}),
    ):
        status, _ = await call(client, world, "alpha_partner", method, path, payload)
        assert status == 404, (method, path)
    _, picker = await call(client, world, "alpha_partner", "GET", "/partner/tenants")
    entry = next(e for e in picker["items"] if e["tenant_id"] == customer)
    assert (entry["manageable"], entry["reasons"]) == (False, ["opted_in"])


async def _withdraw_dpa(client: TestClient[Any, Any], world: World, services: Services) -> int:
    customer = world.tid("eu_dpa")
    async with services.sessions() as session:
        dpa = await session.scalar(select(Dpa.id).where(Dpa.from_tenant_id == customer))
    status, _ = await call(
        client, world, "eu_dpa_admin", "POST", f"/tenants/{customer}/dpas/{dpa}/withdraw"
    )
    return status


async def _reseller_role_off(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('alpha')}/reseller-role"
    return (await call(client, world, "op", "PUT", path, {"enabled": False}))[0]


async def _relink(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('eu_dpa')}/partner-ids"
    return (await call(client, world, "op", "PUT", path, {"reseller_partner_id": "BETA000001"}))[0]


async def _unlink(client: TestClient[Any, Any], world: World, _: Services) -> int:
    path = f"/tenants/{world.tid('eu_dpa')}/partner-ids"
    return (await call(client, world, "op", "PUT", path, {"reseller_partner_id": None}))[0]


@pytest.mark.parametrize(
    "breaks_the_link",
    [_withdraw_dpa, _reseller_role_off, _relink, _unlink],
    ids=[
        "customer withdraws a DPA",
        "operator disables the reseller role",
        "operator relinks",
        "operator unlinks",
    ],
)
async def test_a_broken_link_denies_the_very_next_request(
    client: TestClient[Any, Any],
    services: Services,
    world: World,
    breaks_the_link: Callable[[TestClient[Any, Any], World, Services], Awaitable[int]],
) -> None:
    # §2 checks 1, 3 and 5 are re-read on every request, like the opt-in (check 4).
    path = f"/tenants/{world.tid('eu_dpa')}/users"
    assert (await call(client, world, "alpha_partner", "GET", path))[0] == 200
    assert await breaks_the_link(client, world, services) == 200
    assert (await call(client, world, "alpha_partner", "GET", path))[0] == 404


class FrozenClock:
    """Every ``utcnow()`` in dls answers ``at``.

    ``Call.now`` is a dataclass default factory bound to ``dls.db.types.utcnow`` when the
    class was built, so patching the name ``utcnow`` elsewhere would not reach it; the
    clock is replaced where that function reads it instead.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
        self.at = at
        clock = self

        class FrozenDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
                return clock.at.astimezone(tz) if tz else clock.at.replace(tzinfo=None)

        monkeypatch.setattr(
            dls.db.types, "dt", types.SimpleNamespace(datetime=FrozenDatetime, UTC=dt.UTC)
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return FrozenClock(monkeypatch, start)


@pytest.mark.parametrize(
    ("before_expiry", "expected"),
    [(dt.timedelta(seconds=1), 200), (dt.timedelta(0), 404), (dt.timedelta(seconds=-1), 404)],
    ids=["expires_at-1s", "expires_at", "expires_at+1s"],
)
async def test_consent_expires_at_the_second(
    client: TestClient[Any, Any],
    world: World,
    clock: FrozenClock,
    before_expiry: dt.timedelta,
    expected: int,
) -> None:
    customer = world.tid("opted_out")
    expires_at = clock.at + dt.timedelta(days=30)
    status, _ = await call(
        client,
        world,
        "opted_out_admin",
        "PUT",
        f"/tenants/{customer}/partner-access",
        {"enabled": True, "expires_at": expires_at.isoformat()},
    )
    assert status == 200

    clock.at = expires_at - before_expiry
    status, _ = await call(client, world, "alpha_partner", "GET", f"/tenants/{customer}/users")
    assert status == expected
    _, consent = await call(
        client, world, "opted_out_admin", "GET", f"/tenants/{customer}/partner-access"
    )
    assert consent["active"] is (expected == 200)
