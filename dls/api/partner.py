"""Partner administration: the customer's opt-in, DPAs, the partner's tenant picker, and the
operator's "why may this partner (not) manage that tenant"."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import or_, select

from dls.api.access import path_id, record, require
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel, RowId
from dls.api.tenants import escape_like
from dls.tenancy import service
from dls.tenancy.ids import usable_partner_id
from dls.tenancy.models import Dpa, PartnerAccessChange, Role, Tenant, TenantKind, User
from dls.tenancy.policy import (
    Check,
    EffectiveRole,
    caller_may_delegate,
    delegation_checks,
    is_operator,
)

TAG = "partner administration"


class PartnerAccessRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    enabled: bool
    expires_at: dt.datetime | None
    changed_by: int
    changed_at: dt.datetime


class PartnerAccessOut(BaseModel):
    enabled: bool = Field(description="The switch as set.")
    expires_at: dt.datetime | None
    active: bool = Field(description="On and not expired: what the access rule sees now.")
    history: list[PartnerAccessRecord]


class PartnerAccessUpdate(RequestModel):
    enabled: bool
    expires_at: dt.datetime | None = Field(
        default=None, description="Optional end of the consent; an aware time in the future."
    )


class DpaCreate(RequestModel):
    counterparty_tenant_id: Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
    direction: Literal["outgoing", "incoming"] = Field(
        description="outgoing: from this tenant to the counterparty; incoming: the reverse."
    )
    signed_on: dt.date
    document_ref: Annotated[str, StringConstraints(max_length=200)] | None = None


class DpaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    from_tenant_id: str
    to_tenant_id: str
    signed_on: dt.date
    document_ref: str | None
    recorded_by: int
    recorded_at: dt.datetime
    withdrawn_at: dt.datetime | None


class PickerQuery(PageQuery):
    q: str | None = Field(default=None, max_length=200, description="Name part or Tenant ID.")
    sort: Literal["name", "tenant_id"] = "name"
    manageable: bool | None = Field(default=None, description="Only (not) manageable ones.")


class PickerEntry(BaseModel):
    tenant_id: str
    name: str
    country: str
    eu: bool
    manageable: bool
    reasons: list[str] = Field(description="Why not, when not manageable; empty otherwise.")


class CheckOut(BaseModel):
    name: str
    passed: bool
    detail: str


class ExplanationQuery(RequestModel):
    user_id: RowId


class ExplanationOut(BaseModel):
    user_id: int
    tenant_id: str
    allowed: bool
    checks: list[CheckOut]


# --- the customer's switch --------------------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/partner-access",
    summary="The customer's partner-administration switch and its history",
    tag=TAG,
    response=PartnerAccessOut,
)
async def get_partner_access(call: Call) -> PartnerAccessOut:
    access = await require(call, call.params["tenant_id"], "partner_access", "read")
    return await _partner_access(call, access.tenant)


async def _partner_access(call: Call, tenant: Tenant) -> PartnerAccessOut:
    history = await call.session.scalars(
        select(PartnerAccessChange)
        .where(PartnerAccessChange.tenant_id == tenant.tenant_id)
        .order_by(PartnerAccessChange.id.desc())
        .limit(100)
    )
    expires = tenant.partner_access_expires_at
    return PartnerAccessOut(
        enabled=tenant.partner_access,
        expires_at=expires,
        active=tenant.partner_access and (expires is None or call.now < expires),
        history=[PartnerAccessRecord.model_validate(row) for row in history],
    )


@api.route(
    "PUT",
    "/tenants/{tenant_id}/partner-access",
    summary="Switch partner administration on or off (the customer's own admins only)",
    tag=TAG,
    body=PartnerAccessUpdate,
    response=PartnerAccessOut,
)
async def set_partner_access(call: Call) -> PartnerAccessOut:
    access = await require(call, call.params["tenant_id"], "partner_access", "write")
    body: PartnerAccessUpdate = call.body
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise ApiError.invalid("expires_at", "must carry a time zone")
    changes = service.set_partner_access(
        call.session,
        access.tenant,
        enabled=body.enabled,
        expires_at=body.expires_at,
        by=call.user,
        now=call.now,
    )
    record(
        call,
        access,
        "partner_access.set",
        "tenant",
        access.tenant.tenant_id,
        changes or {"partner_access": {"old": body.enabled, "new": body.enabled}},
    )
    await call.session.flush()
    return await _partner_access(call, access.tenant)


# --- DPAs ------------------------------------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/dpas",
    summary="DPA records of a tenant",
    tag=TAG,
    response=list[DpaOut],
)
async def list_dpas(call: Call) -> list[Dpa]:
    access = await require(call, call.params["tenant_id"], "dpa", "read")
    tenant_id = access.tenant.tenant_id
    rows = await call.session.scalars(
        select(Dpa)
        .where(or_(Dpa.from_tenant_id == tenant_id, Dpa.to_tenant_id == tenant_id))
        .order_by(Dpa.id)
    )
    return list(rows)


@api.route(
    "POST",
    "/tenants/{tenant_id}/dpas",
    summary="Record a DPA with the tenant's reseller or customer",
    tag=TAG,
    body=DpaCreate,
    response=DpaOut,
    status=201,
)
async def create_dpa(call: Call) -> Dpa:
    access = await require(call, call.params["tenant_id"], "dpa", "write")
    body: DpaCreate = call.body
    counterparty = await call.session.get(Tenant, body.counterparty_tenant_id)
    if counterparty is None or not (
        access.role is EffectiveRole.OPERATOR or _linked(access.tenant, counterparty)
    ):
        raise ApiError.not_found("counterparty tenant")
    ends = (access.tenant, counterparty)
    if body.direction == "incoming":
        ends = (counterparty, access.tenant)
    dpa = await service.add_dpa(
        call.session,
        from_tenant=ends[0],
        to_tenant=ends[1],
        signed_on=body.signed_on,
        document_ref=body.document_ref,
        by=call.user,
    )
    record(call, access, "dpa.create", "dpa", dpa.id, body.model_dump())
    return dpa


@api.route(
    "POST",
    "/tenants/{tenant_id}/dpas/{dpa_id}/withdraw",
    summary="Withdraw a DPA",
    tag=TAG,
    response=DpaOut,
)
async def withdraw_dpa(call: Call) -> Dpa:
    access = await require(call, call.params["tenant_id"], "dpa", "write")
    dpa_id = call.params["dpa_id"]
    key = path_id(dpa_id)
    dpa = await call.session.get(Dpa, key) if key is not None else None
    tenant_id = access.tenant.tenant_id
    if dpa is None or tenant_id not in (dpa.from_tenant_id, dpa.to_tenant_id):
        raise ApiError.not_found("DPA")
    if dpa.withdrawn_at is None:
        dpa.withdrawn_at = call.now
        record(call, access, "dpa.withdraw", "dpa", dpa.id)
    return dpa


def _linked(a: Tenant, b: Tenant) -> bool:
    """A customer and the reseller its partner ID points at, in either order."""
    customer, reseller = (a, b) if a.kind is TenantKind.CUSTOMER else (b, a)
    theirs = usable_partner_id(customer.reseller_partner_id)
    return (
        customer.kind is TenantKind.CUSTOMER
        and theirs is not None
        and theirs == usable_partner_id(reseller.partner_admin_id)
    )


# --- the partner's picker --------------------------------------------------------------


@api.route(
    "GET",
    "/partner/tenants",
    summary="Customer tenants linked to the caller's reseller: manageable now or why not",
    tag=TAG,
    query=PickerQuery,
    response=Page[PickerEntry],
)
async def pick_tenants(call: Call) -> dict[str, object]:
    if call.user.role is not Role.PARTNER_ADMIN:
        raise ApiError.forbidden("partner admins only")
    query: PickerQuery = call.query
    ours = usable_partner_id(call.tenant.partner_admin_id)
    if ours is None or not caller_may_delegate(call.user, call.tenant):
        # Checks 1 and 2 are about the caller: failing them, it has no customers to list.
        return {"items": [], "next": None}
    statement = select(Tenant).where(
        Tenant.kind == TenantKind.CUSTOMER, Tenant.reseller_partner_id == ours
    )
    if query.q:
        pattern = f"%{escape_like(query.q.lower())}%"
        statement = statement.where(
            or_(Tenant.name.ilike(pattern, escape="\\"), Tenant.tenant_id == query.q)
        )
    if query.manageable is not None:
        # Opt-in is the condition that varies per customer and lives on the row; the
        # others are rechecked per entry below.
        active = Tenant.partner_access.is_(True) & (
            Tenant.partner_access_expires_at.is_(None)
            | (Tenant.partner_access_expires_at > call.now)
        )
        statement = statement.where(active if query.manageable else ~active)
    sort = Tenant.name if query.sort == "name" else Tenant.tenant_id
    statement = apply_keyset(statement, sort, Tenant.tenant_id, query.after, query.limit)
    rows = (await call.session.scalars(statement)).all()
    page = page_of(rows, query.limit, lambda t: (getattr(t, query.sort), t.tenant_id))
    entries = []
    for tenant in page["items"]:
        checks = await delegation_checks(call.session, call.user, call.tenant, tenant, call.now)
        failed = [check.name for check in checks if not check.passed]
        if query.manageable and failed:
            continue
        entries.append(
            PickerEntry(
                tenant_id=tenant.tenant_id,
                name=tenant.name,
                country=tenant.country,
                eu=tenant.eu,
                manageable=not failed,
                reasons=failed,
            )
        )
    return {"items": entries, "next": page["next"]}


# --- the operator's explanation ----------------------------------------------------------


@api.route(
    "GET",
    "/tenants/{tenant_id}/access-explanation",
    summary="Why a partner user may or may not manage this tenant (operator)",
    tag=TAG,
    query=ExplanationQuery,
    response=ExplanationOut,
)
async def explain_access(call: Call) -> ExplanationOut:
    access = await require(call, call.params["tenant_id"], "access_explanation", "read")
    query: ExplanationQuery = call.query
    user = await call.session.get(User, query.user_id)
    if user is None:
        raise ApiError.not_found("user")
    home = await call.session.get(Tenant, user.tenant_id)
    assert home is not None
    if is_operator(user, home):
        checks = []
        allowed = True
    else:
        checks = await delegation_checks(call.session, user, home, access.tenant, call.now)
        checks.insert(
            0,
            Check(
                "partner_admin_role",
                user.role is Role.PARTNER_ADMIN,
                "the user holds the partner_admin role",
            ),
        )
        allowed = all(check.passed for check in checks)
    return ExplanationOut(
        user_id=user.id,
        tenant_id=access.tenant.tenant_id,
        allowed=allowed,
        checks=[CheckOut(name=c.name, passed=c.passed, detail=c.detail) for c in checks],
    )
