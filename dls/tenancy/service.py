"""Changes to tenants and users, shared by the admin API and the CLI.

Functions here check the domain's own rules (which role fits which tenant, which ID
belongs to which kind) and return what changed, for the audit entry. Who may call them is
decided before, by the policy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.errors import DomainError
from dls.tenancy.ids import new_tenant_id
from dls.tenancy.models import Dpa, PartnerAccessChange, Role, Tenant, TenantKind, User

__all__ = [
    "OrderResult",
    "add_dpa",
    "check_role_fits",
    "create_tenant",
    "create_user",
    "effective_self_setup",
    "import_order",
    "set_partner_access",
    "set_partner_ids",
    "set_reseller_role",
    "update_fields",
]

RESELLER_KINDS = (TenantKind.RESELLER, TenantKind.DISTRIBUTOR)


async def create_tenant(
    session: AsyncSession, *, kind: TenantKind, name: str, country: str, eu: bool
) -> Tenant:
    if kind is TenantKind.OPERATOR:
        existing = await session.scalar(select(Tenant).where(Tenant.kind == TenantKind.OPERATOR))
        if existing is not None:
            raise DomainError("kind", "there is exactly one operator tenant", conflict=True)
    tenant_id = new_tenant_id()
    while await session.get(Tenant, tenant_id) is not None:  # 1 in 10^11; cheap to be sure
        tenant_id = new_tenant_id()
    tenant = Tenant(tenant_id=tenant_id, kind=kind, name=name, country=country.upper(), eu=eu)
    session.add(tenant)
    await session.flush()
    return tenant


@dataclass(frozen=True, slots=True)
class OrderResult:
    tenant: Tenant
    created: bool
    changes: dict[str, Any]


async def import_order(
    session: AsyncSession,
    *,
    order_id: str,
    name: str,
    country: str,
    eu: bool,
    distributor_partner_id: str | None,
    reseller_partner_id: str | None,
) -> OrderResult:
    """Create or update the customer tenant of an order; the same order twice changes nothing."""
    tenant = await session.scalar(select(Tenant).where(Tenant.order_id == order_id))
    wanted = {
        "name": name,
        "country": country.upper(),
        "eu": eu,
        "distributor_partner_id": distributor_partner_id,
        "reseller_partner_id": reseller_partner_id,
    }
    if tenant is None:
        tenant = await create_tenant(
            session, kind=TenantKind.CUSTOMER, name=name, country=country, eu=eu
        )
        tenant.order_id = order_id
        tenant.distributor_partner_id = distributor_partner_id
        tenant.reseller_partner_id = reseller_partner_id
        await session.flush()
        return OrderResult(tenant, True, {"order_id": order_id, **wanted})
    return OrderResult(tenant, False, update_fields(tenant, wanted))


def set_partner_ids(tenant: Tenant, values: dict[str, str | None]) -> dict[str, Any]:
    if "partner_admin_id" in values and tenant.kind not in RESELLER_KINDS:
        raise DomainError("partner_admin_id", "only resellers and distributors have one")
    customer_fields = {"distributor_partner_id", "reseller_partner_id"} & values.keys()
    if customer_fields and tenant.kind is not TenantKind.CUSTOMER:
        raise DomainError(sorted(customer_fields)[0], "only customers carry partner IDs")
    return update_fields(tenant, values)


def set_reseller_role(tenant: Tenant, enabled: bool) -> dict[str, Any]:
    if tenant.kind not in RESELLER_KINDS:
        raise DomainError("enabled", "the reseller role exists for resellers and distributors")
    return update_fields(tenant, {"reseller_enabled": enabled})


def set_partner_access(
    session: AsyncSession,
    tenant: Tenant,
    *,
    enabled: bool,
    expires_at: dt.datetime | None,
    by: User,
    now: dt.datetime,
) -> dict[str, Any]:
    if tenant.kind is not TenantKind.CUSTOMER:
        raise DomainError("enabled", "partner administration is a customer's switch")
    if expires_at is not None and (not enabled or expires_at <= now):
        raise DomainError("expires_at", "must be in the future, and only when enabling")
    session.add(
        PartnerAccessChange(
            tenant_id=tenant.tenant_id, enabled=enabled, expires_at=expires_at, changed_by=by.id
        )
    )
    return update_fields(
        tenant, {"partner_access": enabled, "partner_access_expires_at": expires_at}
    )


async def add_dpa(
    session: AsyncSession,
    *,
    from_tenant: Tenant,
    to_tenant: Tenant,
    signed_on: dt.date,
    document_ref: str | None,
    by: User,
) -> Dpa:
    if from_tenant.tenant_id == to_tenant.tenant_id:
        raise DomainError("to_tenant_id", "a DPA is between two tenants")
    dpa = Dpa(
        from_tenant_id=from_tenant.tenant_id,
        to_tenant_id=to_tenant.tenant_id,
        signed_on=signed_on,
        document_ref=document_ref,
        recorded_by=by.id,
    )
    session.add(dpa)
    await session.flush()
    return dpa


def check_role_fits(role: Role, tenant: Tenant, paid: bool) -> None:
    """Roles exist only where they make sense (delegated-admin rules §1)."""
    if role is Role.OPERATOR and tenant.kind is not TenantKind.OPERATOR:
        raise DomainError("role", "operator exists only in the operator tenant")
    if role is Role.PARTNER_ADMIN:
        if tenant.kind not in RESELLER_KINDS or not tenant.reseller_enabled:
            raise DomainError("role", "partner_admin needs a tenant with the reseller role")
        if not paid:
            raise DomainError("role", "partner_admin is only for paid users")


async def create_user(
    session: AsyncSession,
    tenant: Tenant,
    *,
    username: str,
    display_name: str,
    email: str | None,
    password_hash: str | None,
    role: Role,
    paid: bool,
) -> User:
    """``password_hash`` from ``dls.auth.passwords`` (hashed before the transaction where
    it can be: it takes tens of milliseconds); None for a user who cannot log in."""
    check_role_fits(role, tenant, paid)
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise DomainError("username", "already taken", conflict=True)
    user = User(
        tenant_id=tenant.tenant_id,
        username=username,
        display_name=display_name,
        email=email,
        password_hash=password_hash,
        role=role,
        paid=paid,
    )
    session.add(user)
    await session.flush()
    return user


def effective_self_setup(tenant: Tenant, user: User) -> bool:
    """A user's own override wins over the tenant's default."""
    if user.self_setup_override is not None:
        return user.self_setup_override
    return tenant.self_setup_allowed


def update_fields(target: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Apply ``values``; return {field: {"old": …, "new": …}} for those that changed."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        old = getattr(target, name)
        if old != value:
            setattr(target, name, value)
            changes[name] = {"old": old, "new": value}
    return changes
