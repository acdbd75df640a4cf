"""Support tickets: raise, list, read, change, comment, escalate.

Who sees and may do what is decided in ``dls.tickets.service``; handlers here translate its
answers into 404 (not visible, unknown or malformed number, customer not linked) and 403
(visible, but not this action). Raising a ticket for a customer needs the partner's link
to it, not the customer's opt-in to partner administration.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from dls.api.access import record
from dls.api.common import api
from dls.api.pagination import Page, PageQuery, apply_keyset, page_of
from dls.api.routing import ApiError, Call, RequestModel
from dls.tenancy.ids import TENANT_ID_PATTERN
from dls.tenancy.models import Tenant
from dls.tickets import service
from dls.tickets.models import Addressee, Ticket, TicketChange, TicketComment, TicketState

TAG = "tickets"

TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN.pattern)]
Subject = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
Line = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]
Contact = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Language = Annotated[
    str, StringConstraints(max_length=16), AfterValidator(service.normalize_language)
]
SupportLevel = Annotated[int, Field(strict=True, ge=1, le=5)]


class TicketOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: str = Field(description="NA + 8 digits; never proof of access.")
    customer_tenant_id: str
    partner_account_id: str | None = Field(
        description="The reseller account the ticket was raised under or reported to."
    )
    addressed_to: Addressee = Field(description="Who works it now.")
    subject: str
    description: str
    support_level: int
    language: str
    company: str
    occurred_at: dt.datetime
    reported_at: dt.datetime
    state: TicketState
    submitter_id: int = Field(description="The user who raised it.")
    requester: str = Field(description="Who needs the help.")
    updated_at: dt.datetime
    closed_at: dt.datetime | None


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    body: str
    public: bool = Field(description="false: internal, for the operator and the partner.")
    created_at: dt.datetime


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor_id: int
    field: str
    old_value: str | None
    new_value: str | None
    at: dt.datetime


class TicketDetail(TicketOut):
    comments: list[CommentOut] = Field(description="Those the caller may see.")
    history: list[ChangeOut]


class TicketCreate(RequestModel):
    customer_tenant_id: TenantId
    subject: Subject
    description: Text
    support_level: SupportLevel = Field(description="1 to 5, as the support contract defines.")
    language: Language = Field(description="BCP 47 tag: de, en-GB, zh-Hant-TW.")
    company: Line | None = Field(default=None, description="Default: the customer's name.")
    occurred_at: AwareDatetime = Field(description="With a time zone; not in the future.")
    requester: Contact | None = Field(
        default=None, description="Who needs the help (name, e-mail). Default: the caller."
    )


class TicketUpdate(RequestModel):
    # Omitted fields stay as they are; an explicit null is refused (the types exclude None
    # and defaults are not validated).
    state: TicketState = None  # type: ignore[assignment]
    subject: Subject = None  # type: ignore[assignment]
    description: Text = None  # type: ignore[assignment]
    support_level: SupportLevel = None  # type: ignore[assignment]
    language: Language = None  # type: ignore[assignment]
    company: Line = None  # type: ignore[assignment]
    occurred_at: AwareDatetime = None  # type: ignore[assignment]
    requester: Contact = None  # type: ignore[assignment]


class CommentCreate(RequestModel):
    body: Text
    public: bool = Field(default=True, description="false: internal; not for customers.")


class TicketListQuery(PageQuery):
    state: TicketState | None = None
    customer_tenant_id: TenantId | None = None
    addressed_to: Addressee | None = None
    order: Literal["newest", "oldest"] = "newest"


def _actor(call: Call) -> service.Actor:
    actor = service.actor_of(call.user, call.tenant)
    if actor is None:
        raise ApiError.forbidden("tickets are for operators, partner admins and customer admins")
    return actor


async def _visible(call: Call) -> tuple[service.Actor, Ticket]:
    actor = service.actor_of(call.user, call.tenant)
    ticket = None
    if actor is not None:
        ticket = await service.find_visible(call.session, actor, call.params["number"])
    if actor is None or ticket is None:
        raise ApiError.not_found("ticket")
    return actor, ticket


async def _writable(call: Call) -> tuple[service.Actor, Ticket, Tenant]:
    actor, ticket = await _visible(call)
    if not await service.may_write(call.session, actor, ticket):
        raise ApiError.forbidden("your reseller is no longer linked to this customer")
    customer = await call.session.get(Tenant, ticket.customer_tenant_id)
    assert customer is not None  # foreign key
    return actor, ticket, customer


async def _detail(call: Call, actor: service.Actor, ticket: Ticket) -> TicketDetail:
    await call.session.flush()
    comments: list[TicketComment] = await service.comments_for(call.session, actor, ticket)
    history: list[TicketChange] = list(await service.history_for(call.session, ticket))
    return TicketDetail(
        **TicketOut.model_validate(ticket).model_dump(),
        comments=[CommentOut.model_validate(c) for c in comments],
        history=[ChangeOut.model_validate(h) for h in history],
    )


@api.route(
    "POST",
    "/tickets",
    summary="Raise a ticket for a customer (partners: linked customers, opt-in not needed; "
    "customer admins: their own tenant, addressed to their reseller)",
    tag=TAG,
    body=TicketCreate,
    response=TicketDetail,
    status=201,
)
async def raise_ticket(call: Call) -> TicketDetail:
    actor = _actor(call)
    body: TicketCreate = call.body
    customer = await service.customer_for_new_ticket(call.session, actor, body.customer_tenant_id)
    if customer is None:
        raise ApiError.not_found("tenant")
    ticket = await service.raise_ticket(
        call.session,
        actor,
        customer,
        subject=body.subject,
        description=body.description,
        support_level=body.support_level,
        language=body.language,
        company=body.company,
        occurred_at=body.occurred_at,
        requester=body.requester,
        now=call.now,
    )
    record(
        call,
        service.audit_access(actor, customer),
        "ticket.create",
        "ticket",
        ticket.number,
        {
            "partner_account_id": ticket.partner_account_id,
            "addressed_to": ticket.addressed_to,
            "subject": ticket.subject,
            "support_level": ticket.support_level,
            "state": ticket.state,
        },
    )
    return await _detail(call, actor, ticket)


@api.route(
    "GET",
    "/tickets",
    summary="Tickets the caller may see: operator all, partner its account's, "
    "customer admin its tenant's",
    tag=TAG,
    query=TicketListQuery,
    response=Page[TicketOut],
)
async def list_tickets(call: Call) -> dict[str, object]:
    actor = _actor(call)
    query: TicketListQuery = call.query
    statement = service.list_statement(
        actor,
        state=query.state,
        customer_tenant_id=query.customer_tenant_id,
        addressed_to=query.addressed_to,
    )
    statement = apply_keyset(
        statement,
        Ticket.id,
        Ticket.id,
        query.after,
        query.limit,
        descending=query.order == "newest",
    )
    rows = (await call.session.scalars(statement)).all()
    return page_of(rows, query.limit, lambda t: (t.id, t.id))


@api.route(
    "GET",
    "/tickets/{number}",
    summary="One ticket with the comments the caller may see and its history",
    tag=TAG,
    response=TicketDetail,
)
async def get_ticket(call: Call) -> TicketDetail:
    actor, ticket = await _visible(call)
    return await _detail(call, actor, ticket)


@api.route(
    "PATCH",
    "/tickets/{number}",
    summary="Change a ticket's state or details (operator; the partner while addressed to it)",
    tag=TAG,
    body=TicketUpdate,
    response=TicketDetail,
)
async def update_ticket(call: Call) -> TicketDetail:
    actor, ticket, customer = await _writable(call)
    if not service.may_change(actor, ticket):
        raise ApiError.forbidden("not yours to change now")
    body: TicketUpdate = call.body
    changes = service.update_ticket(
        call.session, actor, ticket, body.model_dump(exclude_unset=True), call.now
    )
    if changes:
        record(
            call,
            service.audit_access(actor, customer),
            "ticket.update",
            "ticket",
            ticket.number,
            changes,
        )
    return await _detail(call, actor, ticket)


@api.route(
    "POST",
    "/tickets/{number}/comments",
    summary="Comment on a ticket (internal comments: operator and partner only)",
    tag=TAG,
    body=CommentCreate,
    response=CommentOut,
    status=201,
)
async def comment_ticket(call: Call) -> TicketComment:
    actor, ticket, customer = await _writable(call)
    body: CommentCreate = call.body
    if not service.may_comment(actor, public=body.public):
        raise ApiError.forbidden("only the operator and the partner write internal comments")
    comment = service.add_comment(
        call.session, actor, ticket, body=body.body, public=body.public, now=call.now
    )
    await call.session.flush()
    # The customer reads its audit log: never the comment text, which may be internal.
    record(
        call,
        service.audit_access(actor, customer),
        "ticket.comment",
        "ticket",
        ticket.number,
        {"comment_id": comment.id, "public": comment.public},
    )
    return comment


@api.route(
    "POST",
    "/tickets/{number}/escalate",
    summary="Hand a ticket from the reseller to the operator",
    tag=TAG,
    response=TicketDetail,
)
async def escalate_ticket(call: Call) -> TicketDetail:
    actor, ticket, customer = await _writable(call)
    if not service.may_change(actor, ticket):
        raise ApiError.forbidden("not yours to escalate")
    changes = service.escalate(call.session, actor, ticket, call.now)
    record(
        call,
        service.audit_access(actor, customer),
        "ticket.escalate",
        "ticket",
        ticket.number,
        changes,
    )
    return await _detail(call, actor, ticket)
