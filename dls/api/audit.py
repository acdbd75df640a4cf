"""Reading the audit log. There is deliberately no endpoint that changes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dls.api.access import require
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call
from dls.audit import AuditEntry, Via
from dls.tenancy.policy import EffectiveRole, is_allowed, is_operator, resolve_access

TAG = "audit"


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    actor_user_id: int | None
    actor_tenant_id: str | None
    target_tenant_id: str | None
    via: Via
    action: str
    object_type: str
    object_id: str
    changes: dict[str, Any] = Field(description="Field: {old, new}; secrets masked.")
    request_id: str
    source_ip: str | None


class AuditQuery(PageQuery):
    action: str | None = Field(default=None, max_length=64)


async def _page(call: Call, statement: Any) -> dict[str, object]:
    query: AuditQuery = call.query
    if query.action:
        statement = statement.where(AuditEntry.action == query.action)
    statement = apply_keyset(
        statement, AuditEntry.id, AuditEntry.id, query.after, query.limit, descending=True
    )
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda e: (e.id, e.id))


@api.route(
    "GET",
    "/tenants/{tenant_id}/audit",
    summary="What was done in a tenant, by its admins, its partner or the operator",
    tag=TAG,
    query=AuditQuery,
    response=Page[AuditOut],
)
async def tenant_audit(call: Call) -> dict[str, object]:
    access = await require(call, call.params["tenant_id"], "audit", "read")
    return await _page(
        call, select(AuditEntry).where(AuditEntry.target_tenant_id == access.tenant.tenant_id)
    )


@api.route(
    "GET",
    "/audit",
    summary="Operator: every entry. Others: what the users of their own tenant did, "
    "in any tenant (a partner sees its own work on behalf of customers)",
    tag=TAG,
    query=AuditQuery,
    response=Page[AuditOut],
)
async def own_audit(call: Call) -> dict[str, object]:
    if is_operator(call.user, call.tenant):
        return await _page(call, select(AuditEntry))
    access = await resolve_access(
        call.session, call.user, call.tenant, call.tenant.tenant_id, call.now
    )
    if (
        access is None
        or access.role is EffectiveRole.USER
        or not is_allowed(access.role, "audit", "read")
    ):
        raise ApiError.forbidden()
    return await _page(
        call, select(AuditEntry).where(AuditEntry.actor_tenant_id == call.tenant.tenant_id)
    )
