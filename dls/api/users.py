"""Users of a tenant: create, list, change, and the separate, narrower right to grant roles."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import or_, select

from dls.api.access import owned, record, require
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel
from dls.api.tenants import escape_like
from dls.auth.passwords import hash_in_thread
from dls.tenancy import service
from dls.tenancy.models import Role, Tenant, User
from dls.tenancy.policy import Access

TAG = "users"

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@+-]{3,128}$")]
DisplayName = Annotated[str, StringConstraints(max_length=200)]
# A plausibility check only; addresses are for people to read, dls sends no mail.
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,189}$")]
Password = Annotated[str, StringConstraints(min_length=12, max_length=1024)]
ADMIN_ROLES = (Role.TENANT_ADMIN, Role.PARTNER_ADMIN, Role.OPERATOR)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: str
    username: str
    display_name: str
    email: str | None
    role: Role
    paid: bool
    self_setup_override: bool | None = Field(description="null: the tenant's default applies.")
    self_setup_allowed: bool = Field(description="Effective value.")
    disabled: bool
    has_password: bool
    created_at: dt.datetime


class UserCreate(RequestModel):
    username: Username
    display_name: DisplayName = ""
    email: Email | None = None
    password: Password | None = Field(default=None, description="Needed to log in.")
    role: Role = Role.USER
    paid: bool = False


class UserUpdate(RequestModel):
    # Omitted fields stay; explicit null is refused except where null means something.
    display_name: DisplayName = None  # type: ignore[assignment]
    email: Email | None = None
    password: Password = None  # type: ignore[assignment]
    paid: bool = None  # type: ignore[assignment]
    disabled: bool = None  # type: ignore[assignment]
    self_setup_override: bool | None = Field(
        default=None, description="true/false overrides the tenant default; null removes it."
    )


class RoleUpdate(RequestModel):
    role: Role


class UserListQuery(PageQuery):
    q: str | None = Field(default=None, max_length=128, description="User name or name part.")
    role: Role | None = None
    sort: Literal["username", "id"] = "username"


def _out(user: User, tenant: Tenant) -> UserOut:
    return UserOut(
        id=user.id,
        tenant_id=user.tenant_id,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        role=user.role,
        paid=user.paid,
        self_setup_override=user.self_setup_override,
        self_setup_allowed=service.effective_self_setup(tenant, user),
        disabled=user.disabled,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
    )


@api.route(
    "GET",
    "/tenants/{tenant_id}/users",
    summary="Users of a tenant",
    tag=TAG,
    query=UserListQuery,
    response=Page[UserOut],
)
async def list_users(call: Call) -> dict[str, object]:
    access = await require(call, call.params["tenant_id"], "user", "read")
    query: UserListQuery = call.query
    statement = select(User).where(User.tenant_id == access.tenant.tenant_id)
    if query.role is not None:
        statement = statement.where(User.role == query.role)
    if query.q:
        pattern = f"%{escape_like(query.q.lower())}%"
        statement = statement.where(
            or_(
                User.username.ilike(pattern, escape="\\"),
                User.display_name.ilike(pattern, escape="\\"),
            )
        )
    sort = User.username if query.sort == "username" else User.id
    statement = apply_keyset(statement, sort, User.id, query.after, query.limit)
    rows = (await call.session.scalars(statement)).all()
    page = page_of(rows, query.limit, lambda u: (getattr(u, query.sort), u.id))
    return {"items": [_out(u, access.tenant) for u in page["items"]], "next": page["next"]}


@api.route(
    "POST",
    "/tenants/{tenant_id}/users",
    summary="Create a user",
    tag=TAG,
    body=UserCreate,
    response=UserOut,
    status=201,
    writes=False,  # the password is hashed before the write lock is taken (Call.writing)
)
async def create_user(call: Call) -> UserOut:
    body: UserCreate = call.body
    await _may_create(call, body)
    password_hash = await _hashed(body.password)
    async with call.writing() as writing:
        access = await _may_create(writing, body)
        user = await service.create_user(
            writing.session,
            access.tenant,
            username=body.username,
            display_name=body.display_name,
            email=body.email,
            password_hash=password_hash,
            role=body.role,
            paid=body.paid,
        )
        record(writing, access, "user.create", "user", user.id, body.model_dump())
    return _out(user, access.tenant)


async def _may_create(call: Call, body: UserCreate) -> Access:
    tenant_id = call.params["tenant_id"]
    access = await require(call, tenant_id, "user", "write")
    if body.role in ADMIN_ROLES:
        await require(call, tenant_id, "user_role", "write")
    return access


async def _hashed(password: str | None) -> str | None:
    return await hash_in_thread(password) if password else None


@api.route(
    "GET", "/tenants/{tenant_id}/users/{user_id}", summary="One user", tag=TAG, response=UserOut
)
async def get_user(call: Call) -> UserOut:
    access = await require(call, call.params["tenant_id"], "user", "read")
    return _out(
        await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user"),
        access.tenant,
    )


@api.route(
    "PATCH",
    "/tenants/{tenant_id}/users/{user_id}",
    summary="Change a user (not the role: see /role)",
    tag=TAG,
    body=UserUpdate,
    response=UserOut,
    writes=False,  # a new password is hashed before the write lock is taken (Call.writing)
)
async def update_user(call: Call) -> UserOut:
    body: UserUpdate = call.body
    await _may_update(call, body)
    password_hash = await _hashed(body.password)
    async with call.writing() as writing:
        access, user = await _may_update(writing, body)
        values = body.model_dump(exclude_unset=True)
        values.pop("password", None)
        changes = service.update_fields(user, values)
        if password_hash is not None:
            user.password_hash = password_hash
            changes["password"] = {"old": "***", "new": "***"}
        if changes:
            record(writing, access, "user.update", "user", user.id, changes)
    return _out(user, access.tenant)


async def _may_update(call: Call, body: UserUpdate) -> tuple[Access, User]:
    tenant_id = call.params["tenant_id"]
    access = await require(call, tenant_id, "user", "write")
    user = await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user")
    values = body.model_dump(exclude_unset=True)
    if "self_setup_override" in values:
        await require(call, tenant_id, "self_setup", "write")
    if user.role in ADMIN_ROLES and user.id != call.user.id:
        # Disabling, re-passwording or un-paying an admin is as strong as revoking the role.
        await require(call, tenant_id, "user_role", "write")
    if "paid" in values and not values["paid"] and user.role is Role.PARTNER_ADMIN:
        raise ApiError.invalid("paid", "a partner_admin must stay paid; change the role first")
    return access, user


@api.route(
    "PUT",
    "/tenants/{tenant_id}/users/{user_id}/role",
    summary="Grant or change a user's role (native admins and operators only)",
    tag=TAG,
    body=RoleUpdate,
    response=UserOut,
)
async def set_role(call: Call) -> UserOut:
    tenant_id = call.params["tenant_id"]
    access = await require(call, tenant_id, "user_role", "write")
    user = await owned(call, User, call.params["user_id"], access.tenant.tenant_id, "user")
    body: RoleUpdate = call.body
    service.check_role_fits(body.role, access.tenant, user.paid)
    changes = service.update_fields(user, {"role": body.role})
    if changes:
        record(call, access, "user.role", "user", user.id, changes)
    return _out(user, access.tenant)
