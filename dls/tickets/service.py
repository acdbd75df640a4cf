"""Who sees which ticket and who may do what with it; raising, changing and commenting.

Three kinds of caller deal with tickets, each by its standing, re-decided on every request
from current database state:

- the **operator** sees every ticket, raises them for any customer, changes any of them;
- a **partner admin** (paid, in a tenant with the reseller role) sees only the tickets of
  its own partner account (``partner_account_id``). It raises tickets for customers its
  reseller is linked to, and works the ones addressed to it until it escalates them;
- a **customer's tenant admin** sees every ticket on its own tenant and reports issues,
  which go to the customer's reseller (or to the operator when there is none).

Raising a ticket for a customer needs the link (checks 1-3 and 5 of the delegation rule,
``link_checks``) but **not** the customer's partner-administration opt-in (check 4). The
reference leaves that open; we decided a customer that has not opted in must still be
able to get help through its reseller, and a ticket gives the partner no access to the
customer's tenant. Changing or commenting a ticket as a partner needs the link too, checked
again on each write; reading the partner account's own tickets needs only the partner's
standing (checks 1-2), as they are the partner's own records.

Internal comments are for the operator and the partner account; the customer never sees
them, and audit entries (which the customer reads) never carry comment text.

Functions return None or False for "not found" and "not allowed"; the API layer turns that
into 404 or 403. Domain rule breaks raise ``DomainError`` (422).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dls.audit import Via
from dls.errors import DomainError
from dls.tenancy.ids import usable_partner_id
from dls.tenancy.models import Role, Tenant, TenantKind, User
from dls.tenancy.policy import Access, EffectiveRole, is_allowed, is_operator, link_checks
from dls.tenancy.service import update_fields
from dls.tickets.models import Addressee, Ticket, TicketChange, TicketComment, TicketState

__all__ = [
    "NUMBER_PATTERN",
    "Actor",
    "actor_of",
    "add_comment",
    "audit_access",
    "comments_for",
    "customer_for_new_ticket",
    "escalate",
    "find_visible",
    "history_for",
    "list_statement",
    "may_change",
    "may_comment",
    "may_write",
    "normalize_language",
    "raise_ticket",
    "sees_internal",
    "update_ticket",
]

NUMBER_PATTERN = re.compile(r"^NA[0-9]{8}$")
NUMBER_SPACE = 10**8

# BCP 47 as people write it for a support language: language, optional script, optional
# region ("de", "en-GB", "zh-Hant-TW", "es-419"). Variants and extensions are not needed.
_LANGUAGE_TAG = re.compile(r"^([A-Za-z]{2,3})(?:-([A-Za-z]{4}))?(?:-([A-Za-z]{2}|[0-9]{3}))?$")

RESELLER_KINDS = (TenantKind.RESELLER, TenantKind.DISTRIBUTOR)

# The checks of the rule that are about the two tenants, not about a partner user acting:
# what decides whether a customer's report can go to its reseller.
_TENANT_LINK_CHECKS = frozenset({"reseller_role_enabled", "partner_id_link", "dpa"})

HISTORY_VALUE_LENGTH = 200  # ticket_changes.old_value/new_value


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller's standing towards tickets: operator, partner admin or customer admin."""

    user: User
    home: Tenant
    role: EffectiveRole

    @property
    def via(self) -> Via:
        return {
            EffectiveRole.OPERATOR: Via.OPERATOR,
            EffectiveRole.PARTNER_ADMIN: Via.PARTNER,
        }.get(self.role, Via.DIRECT)


def actor_of(user: User, home: Tenant) -> Actor | None:
    """The caller's ticket standing, or None when it has none (plain users, unpaid or
    disabled-reseller partner admins, admins of non-customer tenants)."""
    if is_operator(user, home):
        role = EffectiveRole.OPERATOR
    elif user.role is Role.PARTNER_ADMIN:
        # Checks 1 and 2 of the rule; they do not depend on the customer.
        if not (
            home.kind in RESELLER_KINDS
            and home.reseller_enabled
            and user.paid
            and not user.disabled
        ):
            return None
        role = EffectiveRole.PARTNER_ADMIN
    elif user.role is Role.TENANT_ADMIN and home.kind is TenantKind.CUSTOMER:
        role = EffectiveRole.TENANT_ADMIN
    else:
        return None
    if not is_allowed(role, "ticket", "read"):
        return None
    return Actor(user, home, role)


def audit_access(actor: Actor, customer: Tenant) -> Access:
    """The access ``dls.api.access.record`` audits with: target the customer, via as the
    actor's standing."""
    return Access(actor.role, actor.via, customer)


# --- visibility -----------------------------------------------------------------------------


def _visible(actor: Actor) -> ColumnElement[bool]:
    """The SQL form of "the actor may see this ticket"."""
    if actor.role is EffectiveRole.OPERATOR:
        return true()
    if actor.role is EffectiveRole.PARTNER_ADMIN:
        return Ticket.partner_account_id == actor.home.tenant_id
    if actor.role is EffectiveRole.TENANT_ADMIN:
        return Ticket.customer_tenant_id == actor.home.tenant_id
    return false()


def sees_internal(actor: Actor) -> bool:
    """Whether the actor sees internal comments (of the tickets it can see)."""
    return actor.role in (EffectiveRole.OPERATOR, EffectiveRole.PARTNER_ADMIN)


async def find_visible(session: AsyncSession, actor: Actor, number: str) -> Ticket | None:
    """The ticket if its number is well formed and the actor may see it, else None.

    A number is never proof of access: the visibility condition is part of the query.
    """
    if not NUMBER_PATTERN.fullmatch(number):
        return None
    return await session.scalar(select(Ticket).where(Ticket.number == number, _visible(actor)))


def list_statement(
    actor: Actor,
    *,
    state: TicketState | None = None,
    customer_tenant_id: str | None = None,
    addressed_to: Addressee | None = None,
) -> Select[Ticket]:
    """The tickets the actor may see, filtered; the caller adds order and page."""
    statement = select(Ticket).where(_visible(actor))
    if state is not None:
        statement = statement.where(Ticket.state == state)
    if customer_tenant_id is not None:
        statement = statement.where(Ticket.customer_tenant_id == customer_tenant_id)
    if addressed_to is not None:
        statement = statement.where(Ticket.addressed_to == addressed_to)
    return statement


async def comments_for(session: AsyncSession, actor: Actor, ticket: Ticket) -> list[TicketComment]:
    statement = select(TicketComment).where(TicketComment.ticket_id == ticket.id)
    if not sees_internal(actor):
        statement = statement.where(TicketComment.public.is_(True))
    return list(await session.scalars(statement.order_by(TicketComment.id)))


async def history_for(session: AsyncSession, ticket: Ticket) -> Sequence[TicketChange]:
    return (
        await session.scalars(
            select(TicketChange)
            .where(TicketChange.ticket_id == ticket.id)
            .order_by(TicketChange.id)
        )
    ).all()


# --- who may write ----------------------------------------------------------------------------


async def may_write(session: AsyncSession, actor: Actor, ticket: Ticket) -> bool:
    """Whether the actor may act on a ticket it can see, judged on current state.

    A partner's writes are acting regarding the customer, so they need the link to hold
    now (checks 1-3 and 5); the opt-in is not needed, as for raising the ticket.
    """
    if actor.role is not EffectiveRole.PARTNER_ADMIN:
        return True
    customer = await session.get(Tenant, ticket.customer_tenant_id)
    assert customer is not None  # foreign key
    checks = await link_checks(session, actor.user, actor.home, customer)
    return all(check.passed for check in checks)


def may_change(actor: Actor, ticket: Ticket) -> bool:
    """Whether the actor may change fields (state included) or escalate.

    The operator always may; the partner while the ticket is addressed to it (after
    escalation the operator works it); the customer's admins may not (the matrix gives
    them read, create and comment).
    """
    if not is_allowed(actor.role, "ticket", "update"):
        return False
    if actor.role is EffectiveRole.PARTNER_ADMIN:
        return ticket.addressed_to is Addressee.RESELLER
    return True


def may_comment(actor: Actor, *, public: bool) -> bool:
    """Internal comments are written by those who read them: the operator and the partner."""
    if not is_allowed(actor.role, "ticket", "comment"):
        return False
    return public or sees_internal(actor)


# --- raising ------------------------------------------------------------------------------


def normalize_language(tag: str) -> str:
    """A language tag in its canonical case ("en-gb" -> "en-GB"); ValueError if malformed."""
    match = _LANGUAGE_TAG.fullmatch(tag)
    if match is None:
        raise ValueError("not a language tag such as de, en-GB or zh-Hant-TW")
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


async def customer_for_new_ticket(
    session: AsyncSession, actor: Actor, customer_tenant_id: str
) -> Tenant | None:
    """The customer tenant the actor may raise a ticket for, or None ("answer 404").

    Partner admins need the link to the customer (checks 1-3 and 5), **not** the opt-in.
    Customer admins raise tickets for their own tenant only.
    """
    if not is_allowed(actor.role, "ticket", "create"):
        return None
    customer = await session.get(Tenant, customer_tenant_id)
    if customer is None or customer.kind is not TenantKind.CUSTOMER:
        return None
    if actor.role is EffectiveRole.TENANT_ADMIN:
        return customer if customer.tenant_id == actor.home.tenant_id else None
    if actor.role is EffectiveRole.PARTNER_ADMIN:
        checks = await link_checks(session, actor.user, actor.home, customer)
        return customer if all(check.passed for check in checks) else None
    return customer


async def _reseller_for_report(
    session: AsyncSession, user: User, customer: Tenant
) -> Tenant | None:
    """The reseller a customer's report goes to: the one whose Partner Admin ID equals the
    customer's reseller partner ID, while the operator has its reseller role enabled and
    (EU) the DPAs are on record. Otherwise None, and the report goes to the operator: a
    partner that could not act for the customer should not receive its problems either."""
    theirs = usable_partner_id(customer.reseller_partner_id)
    if theirs is None:
        return None
    reseller = await session.scalar(select(Tenant).where(Tenant.partner_admin_id == theirs))
    if reseller is None:
        return None
    checks = await link_checks(session, user, reseller, customer)
    if all(check.passed for check in checks if check.name in _TENANT_LINK_CHECKS):
        return reseller
    return None


async def _new_number(session: AsyncSession) -> str:
    """``NA`` + 8 random digits not yet taken; random so numbers reveal no ticket volume.

    The unique index backs this up against a concurrent insert of the same number.
    """
    while True:
        number = f"NA{secrets.randbelow(NUMBER_SPACE):08d}"
        if await session.scalar(select(Ticket.id).where(Ticket.number == number)) is None:
            return number


async def raise_ticket(
    session: AsyncSession,
    actor: Actor,
    customer: Tenant,
    *,
    subject: str,
    description: str,
    support_level: int,
    language: str,
    company: str | None,
    occurred_at: dt.datetime,
    requester: str | None,
    now: dt.datetime,
) -> Ticket:
    """A new open ticket for ``customer`` (already authorised by
    ``customer_for_new_ticket``), addressed by who raised it:

    - a partner admin: raised under its own account, worked by the partner;
    - a customer admin: to its reseller (see ``_reseller_for_report``), else the operator;
    - the operator: to itself, under no partner account.
    """
    if occurred_at > now:
        raise DomainError("occurred_at", "must not be later than reported_at (now)")
    partner: Tenant | None
    if actor.role is EffectiveRole.PARTNER_ADMIN:
        partner = actor.home
    elif actor.role is EffectiveRole.TENANT_ADMIN:
        partner = await _reseller_for_report(session, actor.user, customer)
    else:
        partner = None
    ticket = Ticket(
        number=await _new_number(session),
        customer_tenant_id=customer.tenant_id,
        partner_account_id=partner.tenant_id if partner else None,
        addressed_to=Addressee.RESELLER if partner else Addressee.OPERATOR,
        subject=subject,
        description=description,
        support_level=support_level,
        language=language,
        company=company if company is not None else customer.name,
        occurred_at=occurred_at.astimezone(dt.UTC),
        reported_at=now,
        state=TicketState.OPEN,
        submitter_id=actor.user.id,
        requester=requester if requester is not None else _contact(actor.user),
        updated_at=now,
    )
    session.add(ticket)
    await session.flush()
    return ticket


def _contact(user: User) -> str:
    name = user.display_name or user.username
    return f"{name} <{user.email}>" if user.email else name


# --- changing -----------------------------------------------------------------------------


def update_ticket(
    session: AsyncSession, actor: Actor, ticket: Ticket, values: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """Apply field changes (authorised by ``may_change``); record each in the ticket's
    history; return {field: {old, new}} for the audit entry."""
    occurred_at = values.get("occurred_at")
    if occurred_at is not None:
        if occurred_at > ticket.reported_at:
            raise DomainError("occurred_at", "must not be later than reported_at")
        values["occurred_at"] = occurred_at.astimezone(dt.UTC)
    changes = update_fields(ticket, values)
    if "state" in changes:
        ticket.closed_at = now if ticket.state is TicketState.CLOSED else None
    _record_history(session, actor, ticket, changes, now)
    return changes


def escalate(
    session: AsyncSession, actor: Actor, ticket: Ticket, now: dt.datetime
) -> dict[str, Any]:
    """Hand a ticket from the reseller to the operator; the partner keeps seeing it.

    Escalating a ticket already addressed to the operator is a conflict.
    """
    if ticket.addressed_to is Addressee.OPERATOR:
        raise DomainError("addressed_to", "already addressed to the operator", conflict=True)
    changes = update_fields(ticket, {"addressed_to": Addressee.OPERATOR})
    _record_history(session, actor, ticket, changes, now)
    return changes


def add_comment(
    session: AsyncSession,
    actor: Actor,
    ticket: Ticket,
    *,
    body: str,
    public: bool,
    now: dt.datetime,
) -> TicketComment:
    comment = TicketComment(
        ticket_id=ticket.id, author_id=actor.user.id, body=body, public=public, created_at=now
    )
    session.add(comment)
    ticket.updated_at = now
    return comment


def _record_history(
    session: AsyncSession,
    actor: Actor,
    ticket: Ticket,
    changes: dict[str, Any],
    now: dt.datetime,
) -> None:
    if not changes:
        return
    ticket.updated_at = now
    for name, change in changes.items():
        session.add(
            TicketChange(
                ticket_id=ticket.id,
                actor_id=actor.user.id,
                field=name,
                old_value=_history_value(change["old"]),
                new_value=_history_value(change["new"]),
                at=now,
            )
        )


def _history_value(value: Any) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
    if len(text) > HISTORY_VALUE_LENGTH:
        text = text[: HISTORY_VALUE_LENGTH - 1] + "…"
    return text
