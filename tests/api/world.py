"""A small channel with every relation the access rules distinguish, for API tests.

Names say the relation to the reseller "Alpha Reseller" (partner ID ALPHA00001), whose
paid partner admin is the usual caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from dls.auth.models import TokenKind
from dls.auth.tokens import issue_token
from dls.db.types import utcnow
from dls.tenancy import service
from dls.tenancy.models import Dpa, Role, Tenant, TenantKind, User

PASSWORD = "correct horse battery staple"


@dataclass
class World:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def tid(self, name: str) -> str:
        return self.tenants[name].tenant_id

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


async def build_world(session: AsyncSession, *, hash_passwords: bool = False) -> World:
    world = World()
    now = utcnow()

    async def tenant(name: str, kind: TenantKind, **values: object) -> Tenant:
        created = await service.create_tenant(
            session,
            kind=kind,
            name=name,
            country=str(values.pop("country", "US")),
            eu=bool(values.pop("eu", False)),
        )
        for key, value in values.items():
            setattr(created, key, value)
        world.tenants[name] = created
        return created

    async def user(name: str, tenant_name: str, role: Role, *, paid: bool = True) -> User:
        # Built directly, not through service.create_user: the world holds users the rules
        # forbid creating (an unpaid partner admin, one in a disabled reseller) because
        # the policy must refuse them even if they exist.
        created = User(
            tenant_id=world.tid(tenant_name),
            username=name,
            display_name=name.title(),
            password_hash=None,
            role=role,
            paid=paid,
        )
        if hash_passwords:
            from dls.auth.passwords import hash_password

            created.password_hash = hash_password(PASSWORD)
        session.add(created)
        await session.flush()
        world.users[name] = created
        token, _ = issue_token(session, created, TokenKind.API, name="test")
        world.tokens[name] = token
        return created

    await tenant("operator", TenantKind.OPERATOR, country="ZZ")
    await user("op", "operator", Role.OPERATOR)

    await tenant("alpha", TenantKind.RESELLER, reseller_enabled=True, partner_admin_id="ALPHA00001")
    await user("alpha_partner", "alpha", Role.PARTNER_ADMIN)
    await user("alpha_unpaid_partner", "alpha", Role.PARTNER_ADMIN, paid=False)
    await user("alpha_admin", "alpha", Role.TENANT_ADMIN)
    await user("alpha_user", "alpha", Role.USER)

    await tenant("beta", TenantKind.RESELLER, reseller_enabled=True, partner_admin_id="BETA000001")
    await user("beta_partner", "beta", Role.PARTNER_ADMIN)

    await tenant(
        "gamma", TenantKind.RESELLER, reseller_enabled=False, partner_admin_id="GAMMA00001"
    )
    await user("gamma_partner", "gamma", Role.PARTNER_ADMIN)

    await tenant(
        "dist", TenantKind.DISTRIBUTOR, reseller_enabled=True, partner_admin_id="DIST000001"
    )
    await user("dist_partner", "dist", Role.PARTNER_ADMIN)

    await tenant(
        "eu_alpha",
        TenantKind.RESELLER,
        country="DE",
        eu=True,
        reseller_enabled=True,
        partner_admin_id="EUALPHA001",
    )
    await user("eu_partner", "eu_alpha", Role.PARTNER_ADMIN)

    def customer_values(
        reseller: str | None,
        *,
        opted: bool = True,
        expires: dt.datetime | None = None,
        **more: object,
    ) -> dict[str, object]:
        return {
            "reseller_partner_id": reseller,
            "distributor_partner_id": "DIST000001",
            "partner_access": opted,
            "partner_access_expires_at": expires,
            **more,
        }

    customers = {
        "opted_in": customer_values("ALPHA00001"),
        "opted_out": customer_values("ALPHA00001", opted=False),
        "expired": customer_values("ALPHA00001", expires=now - dt.timedelta(seconds=1)),
        "unlinked": customer_values(None),
        "other_reseller": customer_values("BETA000001"),
        "gamma_customer": customer_values("GAMMA00001"),
        "dist_as_reseller": customer_values("DIST000001"),
        "eu_no_dpa": customer_values("ALPHA00001", country="FR", eu=True),
        "eu_dpa": customer_values("ALPHA00001", country="FR", eu=True),
        "eu_reseller_no_dpa": customer_values("EUALPHA001"),
    }
    for name, values in customers.items():
        await tenant(name, TenantKind.CUSTOMER, **values)
        await user(f"{name}_admin", name, Role.TENANT_ADMIN)
        await user(f"{name}_user", name, Role.USER)

    # eu_no_dpa has a DPA in one direction only; eu_dpa in both.
    for source, target in (("eu_no_dpa", "alpha"), ("eu_dpa", "alpha"), ("alpha", "eu_dpa")):
        session.add(
            Dpa(
                from_tenant_id=world.tid(source),
                to_tenant_id=world.tid(target),
                signed_on=dt.date(2026, 1, 15),
                recorded_by=world.users["op"].id,
            )
        )
    await session.flush()
    return world


async def add_relations(session: AsyncSession, world: World) -> None:
    """Two relations more, for the authorization matrix and the security tests.

    "eu_dpa_reverse": an opted-in EU customer of alpha whose only DPA runs from alpha to it
    (eu_no_dpa has the other direction only). "plain_dist": a distributor the operator did
    not make a reseller, with a paid partner admin "plain_dist_partner" and a linked,
    opted-in customer "plain_dist_customer".
    """

    async def tenant(name: str, kind: TenantKind, country: str = "US", **values: object) -> None:
        eu = bool(values.pop("eu", False))
        created = await service.create_tenant(session, kind=kind, name=name, country=country, eu=eu)
        for key, value in values.items():
            setattr(created, key, value)
        world.tenants[name] = created

    linked = {"distributor_partner_id": "DIST000001", "partner_access": True}
    await tenant(
        "eu_dpa_reverse",
        TenantKind.CUSTOMER,
        "FR",
        eu=True,
        reseller_partner_id="ALPHA00001",
        **linked,
    )
    await tenant("plain_dist", TenantKind.DISTRIBUTOR, partner_admin_id="PLAINDIST1")
    await tenant(
        "plain_dist_customer", TenantKind.CUSTOMER, reseller_partner_id="PLAINDIST1", **linked
    )
    partner = User(
        tenant_id=world.tid("plain_dist"),
        username="plain_dist_partner",
        display_name="Plain_Dist_Partner",
        role=Role.PARTNER_ADMIN,
        paid=True,
    )
    session.add(partner)
    await session.flush()
    world.users["plain_dist_partner"] = partner
    world.tokens["plain_dist_partner"], _ = issue_token(
        session, partner, TokenKind.API, name="test"
    )
    session.add(
        Dpa(
            from_tenant_id=world.tid("alpha"),
            to_tenant_id=world.tid("eu_dpa_reverse"),
            signed_on=dt.date(2026, 1, 15),
            recorded_by=world.users["op"].id,
        )
    )
    await session.flush()
