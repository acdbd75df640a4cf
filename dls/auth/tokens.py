"""Bearer tokens: issue, look up, revoke. Only their SHA-256 is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls.auth.models import AccessToken, TokenKind
from dls.db.types import utcnow
from dls.tenancy.models import Tenant, User

__all__ = [
    "SESSION_LIFETIME",
    "TOKEN_PREFIX",
    "authenticate_token",
    "issue_token",
    "revoke_presented",
]

TOKEN_PREFIX = "dls_"  # noqa: S105 - a marker for secret scanners, not a secret
SESSION_LIFETIME = dt.timedelta(hours=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: AsyncSession,
    user: User,
    kind: TokenKind,
    *,
    name: str = "",
    expires_at: dt.datetime | None = None,
) -> tuple[str, AccessToken]:
    """A new token and its row; the token string is returned this once and never again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    if kind is TokenKind.SESSION:
        expires_at = utcnow() + SESSION_LIFETIME
    row = AccessToken(
        user_id=user.id,
        kind=kind,
        name=name,
        token_hash=_digest(token),
        prefix=token[: len(TOKEN_PREFIX) + 4],
        expires_at=expires_at,
    )
    session.add(row)
    return token, row


async def authenticate_token(
    session: AsyncSession, token: str
) -> tuple[User, Tenant, AccessToken] | None:
    """The live token's user and home tenant, in one indexed query; None if not valid."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = (
        await session.execute(
            select(AccessToken, User, Tenant)
            .join(User, User.id == AccessToken.user_id)
            .join(Tenant, Tenant.tenant_id == User.tenant_id)
            .where(AccessToken.token_hash == _digest(token))
        )
    ).one_or_none()
    if row is None:
        return None
    access, user, tenant = row
    now = utcnow()
    if access.revoked_at is not None or user.disabled:
        return None
    if access.expires_at is not None and access.expires_at <= now:
        return None
    return user, tenant, access


async def revoke_presented(session: AsyncSession, token: str, now: dt.datetime) -> None:
    row = await session.scalar(select(AccessToken).where(AccessToken.token_hash == _digest(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
