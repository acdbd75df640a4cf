"""Who may do what in which tenant, decided on every request from current database state.

Two steps. First, Python resolves the caller's *effective role* in the target tenant:
operator, the tenant's own admin or user, a partner admin in its own reseller tenant, or a
partner admin acting on behalf of a customer ("partner_delegate") when every check of the
delegation rule holds right now. Second, Casbin looks the (role, resource, action) triple
up in the permission matrix, which is data (``permissions.csv``). Nothing is cached: a
customer switching partner access off denies the partner's very next request.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from pathlib import Path

import casbin
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.audit import Via
from dls.tenancy.ids import usable_partner_id
from dls.tenancy.models import Dpa, Role, Tenant, TenantKind, User

__all__ = [
    "Access",
    "Check",
    "EffectiveRole",
    "caller_may_delegate",
    "delegation_checks",
    "is_allowed",
    "link_checks",
    "resolve_access",
]

_HERE = Path(__file__).parent
_ENFORCER = casbin.Enforcer(str(_HERE / "permissions.conf"), str(_HERE / "permissions.csv"))


class EffectiveRole(enum.StrEnum):
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant_admin"
    PARTNER_DELEGATE = "partner_delegate"
    PARTNER_ADMIN = "partner_admin"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Access:
    """The caller's standing in one target tenant for this request."""

    role: EffectiveRole
    via: Via
    tenant: Tenant


@dataclass(frozen=True, slots=True)
class Check:
    """One condition of the delegation rule, for decisions and for explaining them."""

    name: str
    passed: bool
    detail: str


def is_allowed(role: EffectiveRole, resource: str, action: str) -> bool:
    return bool(_ENFORCER.enforce(role.value, resource, action))


def is_operator(user: User, home: Tenant) -> bool:
    return user.role is Role.OPERATOR and home.kind is TenantKind.OPERATOR


async def resolve_access(
    session: AsyncSession, user: User, home: Tenant, target_id: str, now: dt.datetime
) -> Access | None:
    """The caller's effective role in ``target_id``; None means "answer 404"."""
    if target_id == home.tenant_id:
        if is_operator(user, home):
            return Access(EffectiveRole.OPERATOR, Via.OPERATOR, home)
        return Access(_native_role(user.role), Via.DIRECT, home)
    target = await session.get(Tenant, target_id)
    if target is None:
        return None
    if is_operator(user, home):
        return Access(EffectiveRole.OPERATOR, Via.OPERATOR, target)
    if user.role is Role.PARTNER_ADMIN:
        checks = await delegation_checks(session, user, home, target, now)
        if all(check.passed for check in checks):
            return Access(EffectiveRole.PARTNER_DELEGATE, Via.PARTNER, target)
    return None


def _native_role(role: Role) -> EffectiveRole:
    return {
        Role.TENANT_ADMIN: EffectiveRole.TENANT_ADMIN,
        Role.PARTNER_ADMIN: EffectiveRole.PARTNER_ADMIN,
        Role.USER: EffectiveRole.USER,
        # An operator-role user outside the operator tenant cannot exist (users.py refuses
        # it); should one appear, it gets no more than a user.
        Role.OPERATOR: EffectiveRole.USER,
    }[role]


def _caller_checks(user: User, home: Tenant) -> list[Check]:
    """Checks 1 and 2: about the partner and its tenant, whatever the customer."""
    return [
        Check(
            "reseller_role_enabled",
            home.reseller_enabled and home.kind in (TenantKind.RESELLER, TenantKind.DISTRIBUTOR),
            "the operator enabled the reseller role on the partner's tenant",
        ),
        Check(
            "paid_partner_admin",
            user.role is Role.PARTNER_ADMIN and user.paid and not user.disabled,
            "the caller is a paid partner admin of that tenant",
        ),
    ]


def caller_may_delegate(user: User, home: Tenant) -> bool:
    return all(check.passed for check in _caller_checks(user, home))


async def link_checks(
    session: AsyncSession, user: User, home: Tenant, customer: Tenant
) -> list[Check]:
    """Checks 1-3 and 5 of the rule: what raising a ticket for a customer needs."""
    checks = _caller_checks(user, home)
    theirs = usable_partner_id(customer.reseller_partner_id)
    ours = usable_partner_id(home.partner_admin_id)
    checks.append(
        Check(
            "partner_id_link",
            customer.kind is TenantKind.CUSTOMER and theirs is not None and theirs == ours,
            "the customer's reseller partner ID equals the partner's Partner Admin ID",
        )
    )
    checks.append(await _dpa_check(session, home, customer))
    return checks


async def delegation_checks(
    session: AsyncSession, user: User, home: Tenant, customer: Tenant, now: dt.datetime
) -> list[Check]:
    """Every check of the "on behalf of" rule, in the reference's order."""
    checks = await link_checks(session, user, home, customer)
    expires = customer.partner_access_expires_at
    opted_in = customer.partner_access and (expires is None or now < expires)
    detail = "the customer switched partner administration on"
    if customer.partner_access and not opted_in:
        detail += " (expired)"
    checks.insert(3, Check("opted_in", opted_in, detail))
    return checks


async def _dpa_check(session: AsyncSession, reseller: Tenant, customer: Tenant) -> Check:
    name, detail = "dpa", "a DPA is on record in both directions (EU tenants)"
    if not (customer.eu or reseller.eu):
        return Check(name, True, "not required: neither tenant is in the EU")
    rows = (
        await session.execute(
            select(Dpa.from_tenant_id, Dpa.to_tenant_id).where(
                Dpa.withdrawn_at.is_(None),
                (
                    (Dpa.from_tenant_id == customer.tenant_id)
                    & (Dpa.to_tenant_id == reseller.tenant_id)
                )
                | (
                    (Dpa.from_tenant_id == reseller.tenant_id)
                    & (Dpa.to_tenant_id == customer.tenant_id)
                ),
            )
        )
    ).all()
    directions = {(row[0], row[1]) for row in rows}
    both = {
        (customer.tenant_id, reseller.tenant_id),
        (reseller.tenant_id, customer.tenant_id),
    } <= directions
    return Check(name, both, detail)
