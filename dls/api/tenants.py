"""Tenants: the operator's list, orders, partner IDs and the reseller role; tenant settings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import or_, select

from dls.api.access import record, require, require_operator
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import Call, RequestModel
from dls.tenancy import service
from dls.tenancy.ids import PARTNER_ID_PATTERN
from dls.tenancy.models import Tenant, TenantKind

TAG = "tenants"

Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
PartnerId = Annotated[str, StringConstraints(pattern=PARTNER_ID_PATTERN.pattern)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tenant_id: str
    kind: TenantKind
    name: str
    country: str
    eu: bool
    distributor_partner_id: str | None
    reseller_partner_id: str | None
    partner_admin_id: str | None
    reseller_enabled: bool
    partner_access: bool
    partner_access_expires_at: dt.datetime | None
    self_setup_allowed: bool = Field(description="Default for users: may set up own Unify phones.")
    legacy_mac_only: bool = Field(description="Devices trusted by MAC alone (insecure).")
    warnings: list[str] = Field(default_factory=list, description="Risky settings in force.")
    created_at: dt.datetime
    updated_at: dt.datetime

    @model_validator(mode="after")
    def _warn(self) -> TenantOut:
        if self.legacy_mac_only and not self.warnings:
            self.warnings.append(
                "legacy MAC-only device trust is on: anyone who knows a device's MAC "
                "gets its configuration, SIP passwords included"
            )
        return self


class TenantCreate(RequestModel):
    kind: Literal[TenantKind.DISTRIBUTOR, TenantKind.RESELLER, TenantKind.CUSTOMER]
    name: Name
    country: Country = Field(description="ISO 3166-1 alpha-2, upper case.")
    eu: bool = False


class TenantUpdate(RequestModel):
    # Omitted fields stay as they are; an explicit null is refused (the types exclude None
    # and defaults are not validated).
    name: Name = None  # type: ignore[assignment]
    self_setup_allowed: bool = None  # type: ignore[assignment]
    country: Country = Field(default=None, description="Operator only.")  # type: ignore[assignment]
    eu: bool = Field(default=None, description="Operator only: decides the DPA rule.")  # type: ignore[assignment]
    legacy_mac_only: bool = Field(  # type: ignore[assignment]
        default=None, description="Native admins and operators only; off by default."
    )


class TenantListQuery(PageQuery):
    q: str | None = Field(default=None, max_length=200, description="Name part or Tenant ID.")
    kind: TenantKind | None = None
    sort: Literal["name", "tenant_id"] = "name"


class PartnerIdsUpdate(RequestModel):
    distributor_partner_id: PartnerId | None = None
    reseller_partner_id: PartnerId | None = None
    partner_admin_id: PartnerId | None = None


class ResellerRoleUpdate(RequestModel):
    enabled: bool


class OrderImport(RequestModel):
    order_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    name: Name
    country: Country
    eu: bool = False
    distributor_partner_id: PartnerId | None = None
    reseller_partner_id: PartnerId | None = None


class OrderOut(BaseModel):
    created: bool
    tenant: TenantOut


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@api.route(
    "GET",
    "/tenants",
    summary="All tenants (operator), searchable, paginated",
    tag=TAG,
    query=TenantListQuery,
    response=Page[TenantOut],
)
async def list_tenants(call: Call) -> dict[str, object]:
    require_operator(call)
    query: TenantListQuery = call.query
    statement = select(Tenant)
    if query.kind is not None:
        statement = statement.where(Tenant.kind == query.kind)
    if query.q:
        pattern = f"%{escape_like(query.q.lower())}%"
        statement = statement.where(
            or_(Tenant.name.ilike(pattern, escape="\\"), Tenant.tenant_id == query.q)
        )
    sort = Tenant.name if query.sort == "name" else Tenant.tenant_id
    statement = apply_keyset(statement, sort, Tenant.tenant_id, query.after, query.limit)
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda t: (getattr(t, query.sort), t.tenant_id))


@api.route(
    "POST",
    "/tenants",
    summary="Create a distributor, reseller or customer (operator)",
    tag=TAG,
    body=TenantCreate,
    response=TenantOut,
    status=201,
)
async def create_tenant(call: Call) -> Tenant:
    require_operator(call)
    body: TenantCreate = call.body
    tenant = await service.create_tenant(
        call.session, kind=body.kind, name=body.name, country=body.country, eu=body.eu
    )
    record(
        call,
        None,
        "tenant.create",
        "tenant",
        tenant.tenant_id,
        body.model_dump(),
        target_tenant_id=tenant.tenant_id,
    )
    return tenant


@api.route("GET", "/tenants/{tenant_id}", summary="One tenant", tag=TAG, response=TenantOut)
async def get_tenant(call: Call) -> Tenant:
    access = await require(call, call.params["tenant_id"], "tenant", "read")
    return access.tenant


@api.route(
    "PATCH",
    "/tenants/{tenant_id}",
    summary="Change a tenant's name or settings",
    tag=TAG,
    body=TenantUpdate,
    response=TenantOut,
)
async def update_tenant(call: Call) -> Tenant:
    body: TenantUpdate = call.body
    tenant_id = call.params["tenant_id"]
    access = await require(call, tenant_id, "tenant", "update")
    values = body.model_dump(exclude_unset=True)
    if values.keys() & {"country", "eu"}:
        await require(call, tenant_id, "tenant_registration", "write")
    if "self_setup_allowed" in values:
        await require(call, tenant_id, "self_setup", "write")
    if "legacy_mac_only" in values:
        await require(call, tenant_id, "device_trust", "write")
    changes = service.update_fields(access.tenant, values)
    if changes:
        record(call, access, "tenant.update", "tenant", tenant_id, changes)
    return access.tenant


@api.route(
    "PUT",
    "/tenants/{tenant_id}/partner-ids",
    summary="Set Global One partner IDs (operator)",
    tag=TAG,
    body=PartnerIdsUpdate,
    response=TenantOut,
)
async def set_partner_ids(call: Call) -> Tenant:
    access = await require(call, call.params["tenant_id"], "tenant_partner_ids", "write")
    body: PartnerIdsUpdate = call.body
    changes = service.set_partner_ids(access.tenant, body.model_dump(exclude_unset=True))
    if changes:
        record(call, access, "tenant.partner_ids", "tenant", access.tenant.tenant_id, changes)
    return access.tenant


@api.route(
    "PUT",
    "/tenants/{tenant_id}/reseller-role",
    summary="Enable or disable the reseller role (operator)",
    tag=TAG,
    body=ResellerRoleUpdate,
    response=TenantOut,
)
async def set_reseller_role(call: Call) -> Tenant:
    access = await require(call, call.params["tenant_id"], "reseller_role", "write")
    body: ResellerRoleUpdate = call.body
    changes = service.set_reseller_role(access.tenant, body.enabled)
    if changes:
        record(call, access, "tenant.reseller_role", "tenant", access.tenant.tenant_id, changes)
    return access.tenant


@api.route(
    "POST",
    "/orders",
    summary="Import an order: create or update its customer tenant "
    "(operator; idempotent per order_id)",
    tag=TAG,
    body=OrderImport,
    response=OrderOut,
)
async def import_order(call: Call) -> OrderOut:
    require_operator(call)
    body: OrderImport = call.body
    result = await service.import_order(
        call.session,
        order_id=body.order_id,
        name=body.name,
        country=body.country,
        eu=body.eu,
        distributor_partner_id=body.distributor_partner_id,
        reseller_partner_id=body.reseller_partner_id,
    )
    if result.changes:
        action = "order.create" if result.created else "order.update"
        record(
            call,
            None,
            action,
            "tenant",
            result.tenant.tenant_id,
            result.changes,
            target_tenant_id=result.tenant.tenant_id,
        )
    return OrderOut(created=result.created, tenant=TenantOut.model_validate(result.tenant))
