"""Append-only audit log of every admin write.

Entries are written in the same transaction as the change they describe, so a change
without its entry cannot be committed. Nothing in dls updates or deletes them; the
migration adds database triggers that refuse UPDATE and DELETE on both databases.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow
from dls.logs import mask_fields

__all__ = ["AuditEntry", "Via", "record"]


class Via(enum.StrEnum):
    DIRECT = "direct"  # a member of the target tenant
    PARTNER = "partner"  # a partner admin acting on behalf of the customer
    OPERATOR = "operator"  # the service's operations team


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_target", "target_tenant_id", "id"),
        Index("ix_audit_entries_actor_tenant", "actor_tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor_user_id: Mapped[int | None] = mapped_column(Integer)
    actor_tenant_id: Mapped[str | None] = mapped_column(String(12))
    target_tenant_id: Mapped[str | None] = mapped_column(String(12))
    via: Mapped[Via] = mapped_column(enum_column(Via))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str] = mapped_column(String(64), default="-")
    source_ip: Mapped[str | None] = mapped_column(String(64))


def record(
    session: AsyncSession,
    *,
    actor_user_id: int | None,
    actor_tenant_id: str | None,
    target_tenant_id: str | None,
    via: Via,
    action: str,
    object_type: str,
    object_id: str | int,
    changes: dict[str, Any] | None = None,
    request_id: str = "-",
    source_ip: str | None = None,
) -> AuditEntry:
    """Add an entry to the session's transaction; secrets in ``changes`` are masked."""
    entry = AuditEntry(
        actor_user_id=actor_user_id,
        actor_tenant_id=actor_tenant_id,
        target_tenant_id=target_tenant_id,
        via=via,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        changes=_jsonable(mask_fields(changes or {})),
        request_id=request_id,
        source_ip=source_ip,
    )
    session.add(entry)
    return entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value
