"""Bearer tokens (login sessions and long-lived API tokens) and failed-login records."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow

__all__ = ["AccessToken", "LoginFailure", "TokenKind"]


class TokenKind(enum.StrEnum):
    SESSION = "session"  # from a password login, short-lived
    API = "api"  # created by the user for scripts, long-lived, revocable


class AccessToken(Base):
    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[TokenKind] = mapped_column(enum_column(TokenKind))
    name: Mapped[str] = mapped_column(String(100), default="")
    # SHA-256 of the token: tokens carry 256 random bits, so a fast hash is enough and the
    # lookup stays one indexed query. The token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class LoginFailure(Base):
    """Kept in the database so every worker and instance counts the same failures."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
