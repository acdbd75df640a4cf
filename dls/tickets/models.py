"""Tickets, their comments and their field history."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow

__all__ = ["Addressee", "Ticket", "TicketChange", "TicketComment", "TicketState"]


class TicketState(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Addressee(enum.StrEnum):
    """Who is working the ticket now: the customer's reseller, or the operator."""

    RESELLER = "reseller"
    OPERATOR = "operator"


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_partner", "partner_account_id", "id"),
        Index("ix_tickets_customer", "customer_tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(10), unique=True)
    customer_tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    # The reseller account the ticket was raised under (or addressed to); drives visibility.
    partner_account_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.tenant_id"))
    addressed_to: Mapped[Addressee] = mapped_column(enum_column(Addressee))
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    support_level: Mapped[int] = mapped_column(SmallInteger)
    language: Mapped[str] = mapped_column(String(16))
    company: Mapped[str] = mapped_column(String(200), default="")
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    reported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    state: Mapped[TicketState] = mapped_column(enum_column(TicketState), default=TicketState.OPEN)
    submitter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requester: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class TicketComment(Base):
    __tablename__ = "ticket_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class TicketChange(Base):
    """One field changed on a ticket: the ticket's own history, shown with it."""

    __tablename__ = "ticket_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    field: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(String(200))
    new_value: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
