"""Login, logout, the caller's own profile, and API tokens."""

from __future__ import annotations

import asyncio
import datetime as dt

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dls.api.access import path_id, record
from dls.api.common import api
from dls.api.routing import ApiError, Call, RequestModel
from dls.auth import ratelimit
from dls.auth.models import AccessToken, TokenKind
from dls.auth.passwords import verify_password
from dls.auth.tokens import issue_token, revoke_presented
from dls.db.types import utcnow
from dls.tenancy.models import Role, Tenant, TenantKind, User
from dls.tenancy.service import effective_self_setup

TAG = "auth"


class LoginRequest(RequestModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    token: str = Field(description="Shown once; send as `Authorization: Bearer <token>`.")
    expires_at: dt.datetime | None


class MeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    paid: bool
    tenant_id: str
    tenant_kind: TenantKind
    tenant_name: str
    self_setup_allowed: bool = Field(description="Effective: the user's override or the tenant's.")


class ApiTokenCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: dt.datetime | None = Field(default=None, description="Optional; aware time.")


class ApiTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="First characters, to recognise the token.")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="Shown once, never again.")


@api.route(
    "POST",
    "/auth/login",
    summary="Log in; returns a bearer token for one hour",
    tag=TAG,
    body=LoginRequest,
    response=TokenOut,
    public=True,
    # Reads, then verifies the password (tens of milliseconds, in a thread) before it
    # writes the failure or the token in a short transaction of its own: the failure must
    # be counted though the login fails, and no write lock waits on the password.
    writes=False,
)
async def login(call: Call) -> TokenOut:
    body: LoginRequest = call.body
    address = call.remote or "-"
    wait = await ratelimit.login_blocked(call.session, body.username, address)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            "too many failed logins; try again later",
            headers={"Retry-After": str(wait)},
        )
    user = await call.session.scalar(select(User).where(User.username == body.username))
    valid = await asyncio.to_thread(
        verify_password, body.password, user.password_hash if user else None
    )
    admitted = user is not None and valid and not user.disabled
    async with call.writing() as writing:
        if user is None or not admitted:
            await ratelimit.record_failure(writing.session, body.username, address)
        else:
            await ratelimit.clear_failures(writing.session, body.username)
            token, row = issue_token(writing.session, user, TokenKind.SESSION)
    if user is None or not admitted:
        raise ApiError(401, "unauthorized", "wrong user name or password")
    return TokenOut(token=token, expires_at=row.expires_at)


@api.route("POST", "/auth/logout", summary="Revoke the token of this request", tag=TAG)
async def logout(call: Call) -> None:
    header = call.request.headers.get("Authorization", "")
    await revoke_presented(call.session, header.partition(" ")[2].strip(), call.now)


@api.route(
    "GET",
    "/me",
    summary="The caller, its tenant and its effective self-setup right",
    tag=TAG,
    response=MeOut,
)
async def me(call: Call) -> MeOut:
    return _me(call.user, call.tenant)


def _me(user: User, tenant: Tenant) -> MeOut:
    return MeOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        paid=user.paid,
        tenant_id=tenant.tenant_id,
        tenant_kind=tenant.kind,
        tenant_name=tenant.name,
        self_setup_allowed=effective_self_setup(tenant, user),
    )


@api.route(
    "GET", "/me/tokens", summary="The caller's API tokens", tag=TAG, response=list[ApiTokenOut]
)
async def list_tokens(call: Call) -> list[AccessToken]:
    rows = await call.session.scalars(
        select(AccessToken)
        .where(AccessToken.user_id == call.user.id, AccessToken.kind == TokenKind.API)
        .order_by(AccessToken.id)
    )
    return list(rows)


@api.route(
    "POST",
    "/me/tokens",
    summary="Create an API token (shown once)",
    tag=TAG,
    body=ApiTokenCreate,
    response=ApiTokenCreated,
    status=201,
)
async def create_token(call: Call) -> ApiTokenCreated:
    body: ApiTokenCreate = call.body
    if body.expires_at is not None and (
        body.expires_at.tzinfo is None or body.expires_at <= call.now
    ):
        raise ApiError.invalid("expires_at", "must be an aware time in the future")
    token, row = issue_token(
        call.session, call.user, TokenKind.API, name=body.name, expires_at=body.expires_at
    )
    await call.session.flush()
    record(
        call,
        None,
        "token.create",
        "access_token",
        row.id,
        {"name": body.name},
        target_tenant_id=call.tenant.tenant_id,
    )
    return ApiTokenCreated(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=None,
        token=token,
    )


@api.route(
    "DELETE", "/me/tokens/{token_id}", summary="Revoke one of the caller's API tokens", tag=TAG
)
async def revoke_token(call: Call) -> None:
    token_id = call.params["token_id"]
    key = path_id(token_id)
    row = await call.session.get(AccessToken, key) if key is not None else None
    if row is None or row.user_id != call.user.id or row.kind is not TokenKind.API:
        raise ApiError.not_found("token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(
            call,
            None,
            "token.revoke",
            "access_token",
            row.id,
            target_tenant_id=call.tenant.tenant_id,
        )
