"""The operator tenant and the first operator account, created once on first start."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls import audit
from dls.auth.passwords import generate_password, hash_in_thread
from dls.tenancy.models import Role, Tenant, TenantKind
from dls.tenancy.service import create_tenant, create_user

__all__ = ["FirstOperator", "ensure_operator"]

OPERATOR_USERNAME = "operator"
OPERATOR_COUNTRY = "ZZ"  # ISO 3166 "unknown"; the operator may set its own later


@dataclass(frozen=True, slots=True)
class FirstOperator:
    tenant_id: str
    username: str
    password: str  # printed once by the caller, stored only as a hash


async def ensure_operator(session: AsyncSession) -> FirstOperator | None:
    """Create the operator tenant and its first account if there is none; else None."""
    existing = await session.scalar(select(Tenant).where(Tenant.kind == TenantKind.OPERATOR))
    if existing is not None:
        return None
    tenant = await create_tenant(
        session, kind=TenantKind.OPERATOR, name="Operator", country=OPERATOR_COUNTRY, eu=False
    )
    password = generate_password()
    user = await create_user(
        session,
        tenant,
        username=OPERATOR_USERNAME,
        display_name="First operator",
        email=None,
        password_hash=await hash_in_thread(password),
        role=Role.OPERATOR,
        paid=True,
    )
    audit.record(
        session,
        actor_user_id=None,
        actor_tenant_id=None,
        target_tenant_id=tenant.tenant_id,
        via=audit.Via.OPERATOR,
        action="bootstrap",
        object_type="user",
        object_id=user.id,
        changes={"username": OPERATOR_USERNAME, "role": Role.OPERATOR},
    )
    return FirstOperator(tenant.tenant_id, OPERATOR_USERNAME, password)
