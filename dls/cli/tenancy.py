"""Operator basics from the shell: ``dls tenant``, ``dls user``, ``dls partner``.

These use the same services as the admin API and are audited the same way, as operator
actions with no acting user (the shell has none). Their input is checked by the API's own
request models, so a name or user name the API refuses is refused here too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dls import audit
from dls.api.tenants import TenantCreate
from dls.api.users import UserCreate
from dls.auth.passwords import generate_password, hash_in_thread
from dls.config import Settings
from dls.db.engine import WRITER, create_engine, session_factory
from dls.errors import DomainError
from dls.problems import problems_of
from dls.server import run_async
from dls.tenancy import service
from dls.tenancy.ids import PARTNER_ID_PATTERN
from dls.tenancy.models import Role, Tenant, TenantKind


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument(
        "--kind",
        required=True,
        choices=[k.value for k in TenantKind if k is not TenantKind.OPERATOR],
    )
    create.add_argument("--name", required=True)
    create.add_argument("--country", required=True, help="ISO 3166-1 alpha-2")
    create.add_argument("--eu", action="store_true")
    create.set_defaults(handler=_sync(tenant_create))
    listing = tenant.add_parser("list", help="list tenants")
    listing.add_argument("--kind", choices=[k.value for k in TenantKind])
    listing.set_defaults(handler=_sync(tenant_list))

    user = commands.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    user_create = user.add_parser("create", help="create a user; prints its password once")
    user_create.add_argument("--tenant", required=True, help="Tenant ID")
    user_create.add_argument("--username", required=True)
    user_create.add_argument("--role", default="user", choices=[r.value for r in Role])
    user_create.add_argument("--paid", action="store_true")
    user_create.add_argument("--display-name", default="")
    user_create.set_defaults(handler=_sync(user_create_command))

    partner = commands.add_parser("partner", help="reseller role and partner IDs").add_subparsers(
        dest="action", required=True
    )
    enable = partner.add_parser("enable", help="enable the reseller role on a tenant")
    enable.add_argument("--tenant", required=True)
    enable.add_argument("--partner-admin-id", help="the tenant's Partner Admin ID")
    enable.set_defaults(handler=_sync(partner_enable), enabled=True)
    disable = partner.add_parser("disable", help="disable the reseller role")
    disable.add_argument("--tenant", required=True)
    disable.set_defaults(handler=_sync(partner_enable), enabled=False, partner_admin_id=None)
    link = partner.add_parser("link", help="set a customer's distributor and reseller IDs")
    link.add_argument("--tenant", required=True)
    link.add_argument("--reseller-id")
    link.add_argument("--distributor-id")
    link.set_defaults(handler=_sync(partner_link))


Command = Callable[[AsyncSession, argparse.Namespace], Awaitable[None]]


def _sync(command: Command) -> Callable[[Settings, argparse.Namespace], int]:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        async def go() -> None:
            engine = create_engine(settings.effective_database_url)
            try:
                async with session_factory(engine)() as session, session.begin():
                    # A running server writes many times a second: take SQLite's write
                    # lock first rather than fail when it committed after our first read.
                    await session.connection(execution_options=WRITER)
                    await command(session, args)
            finally:
                await engine.dispose()

        try:
            run_async(go())
        except DomainError as error:
            print(f"dls: {error}", file=sys.stderr)
            return 2
        except ValidationError as error:
            for problem in problems_of(error):
                print(
                    f"dls: --{problem.where.replace('_', '-')}: {problem.message}", file=sys.stderr
                )
            return 2
        return 0

    return run


async def _tenant(session: AsyncSession, tenant_id: str) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise DomainError("tenant", f"no tenant {tenant_id}")
    return tenant


def _audit(
    session: AsyncSession,
    tenant: Tenant,
    action: str,
    object_type: str,
    object_id: str | int,
    changes: dict[str, Any],
) -> None:
    audit.record(
        session,
        actor_user_id=None,
        actor_tenant_id=None,
        target_tenant_id=tenant.tenant_id,
        via=audit.Via.OPERATOR,
        action=action,
        object_type=object_type,
        object_id=object_id,
        changes={**changes, "source": "cli"},
    )


def _partner_id(value: str | None, field: str) -> str | None:
    if value is not None and not PARTNER_ID_PATTERN.fullmatch(value):
        raise DomainError(field, f"must match {PARTNER_ID_PATTERN.pattern}")
    return value


async def tenant_create(session: AsyncSession, args: argparse.Namespace) -> None:
    body = TenantCreate.model_validate(
        {"kind": args.kind, "name": args.name, "country": args.country.upper(), "eu": args.eu}
    )
    tenant = await service.create_tenant(
        session, kind=body.kind, name=body.name, country=body.country, eu=body.eu
    )
    _audit(
        session,
        tenant,
        "tenant.create",
        "tenant",
        tenant.tenant_id,
        {"kind": body.kind.value, "name": body.name, "country": body.country, "eu": body.eu},
    )
    print(tenant.tenant_id)


async def tenant_list(session: AsyncSession, args: argparse.Namespace) -> None:
    statement = select(Tenant).order_by(Tenant.name, Tenant.tenant_id)
    if args.kind:
        statement = statement.where(Tenant.kind == TenantKind(args.kind))
    for tenant in await session.scalars(statement):
        flags = []
        if tenant.reseller_enabled:
            flags.append(f"reseller:{tenant.partner_admin_id or '-'}")
        if tenant.reseller_partner_id:
            flags.append(f"linked:{tenant.reseller_partner_id}")
        if tenant.partner_access:
            flags.append("opted-in")
        print(
            f"{tenant.tenant_id}  {tenant.kind.value:<11} {tenant.country} "
            f"{'EU' if tenant.eu else '  '} {tenant.name}  {' '.join(flags)}".rstrip()
        )


async def user_create_command(session: AsyncSession, args: argparse.Namespace) -> None:
    body = UserCreate.model_validate(
        {
            "username": args.username,
            "display_name": args.display_name,
            "role": args.role,
            "paid": args.paid,
        }
    )
    tenant = await _tenant(session, args.tenant)
    password = generate_password()
    user = await service.create_user(
        session,
        tenant,
        username=body.username,
        display_name=body.display_name,
        email=None,
        password_hash=await hash_in_thread(password),
        role=body.role,
        paid=body.paid,
    )
    _audit(
        session,
        tenant,
        "user.create",
        "user",
        user.id,
        {"username": body.username, "role": body.role.value, "paid": body.paid},
    )
    print(f"user {user.username} (id {user.id}) password {password}")


async def partner_enable(session: AsyncSession, args: argparse.Namespace) -> None:
    tenant = await _tenant(session, args.tenant)
    changes = service.set_reseller_role(tenant, args.enabled)
    partner_admin_id = _partner_id(args.partner_admin_id, "partner-admin-id")
    if partner_admin_id is not None:
        changes |= service.set_partner_ids(tenant, {"partner_admin_id": partner_admin_id})
    if changes:
        _audit(session, tenant, "tenant.reseller_role", "tenant", tenant.tenant_id, changes)
    print(
        f"{tenant.tenant_id} reseller role {'enabled' if tenant.reseller_enabled else 'disabled'}"
        f", Partner Admin ID {tenant.partner_admin_id or '-'}"
    )


async def partner_link(session: AsyncSession, args: argparse.Namespace) -> None:
    tenant = await _tenant(session, args.tenant)
    values: dict[str, str | None] = {}
    if args.reseller_id is not None:
        values["reseller_partner_id"] = _partner_id(args.reseller_id, "reseller-id")
    if args.distributor_id is not None:
        values["distributor_partner_id"] = _partner_id(args.distributor_id, "distributor-id")
    changes = service.set_partner_ids(tenant, values)
    if changes:
        _audit(session, tenant, "tenant.partner_ids", "tenant", tenant.tenant_id, changes)
    print(
        f"{tenant.tenant_id} reseller {tenant.reseller_partner_id or '-'} "
        f"distributor {tenant.distributor_partner_id or '-'}"
    )
