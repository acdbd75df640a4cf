"""The authorization matrix: every admin route x caller x relation to the target.

OWASP's Authorization Testing Automation: the expected answer of every cell is written out
below from the delegated-admin rules (reference §2 the access rule, §3 what delegates may
not do, §7 tickets, §9 security tests), never computed from ``permissions.csv``, so a
change to the policy file that breaks a rule fails here. Each cell sends a valid request,
so the status reflects authorization, not validation. A route declared in
``dls.api.api`` without a row here fails ``test_every_route_has_a_row``.

The rows share one database and one world (building them per row was most of the run
time). So no cell may change what another cell of any row is allowed to do: switches,
partner IDs and EU membership are re-sent with their current value, and what a cell acts
on (users, DPAs, devices, tokens, tickets) is a spare seeded for its row alone.

Codes in the expected strings, one per column, groups separated by spaces:

- ``A`` allowed: the row's success status;
- ``F`` 403: the caller may see the target (or the function takes no target) but not do this;
- ``N`` 404: the caller has no standing in the target, so its existence is not revealed;
- ``U`` 422: allowed, but the domain refuses the request for this kind of tenant (e.g. the
  reseller role on a customer), so the same valid body cannot apply.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dls.api import API_PREFIX, api
from dls.auth.models import TokenKind
from dls.auth.passwords import hash_password
from dls.auth.tokens import issue_token
from dls.db.engine import create_engine
from dls.db.types import utcnow
from dls.devices.models import Device, DeviceGroup, DeviceStatus, UnclaimedDevice
from dls.firmware.engine import DeviceState, RolloutStatus, WaveStatus
from dls.firmware.models import (
    ChecksumSource,
    FirmwareImage,
    FirmwareImageModel,
    Rollout,
    RolloutDevice,
    RolloutWave,
)
from dls.services import Services
from dls.tenancy.models import Dpa, Role, Tenant, TenantKind, User
from dls.tickets.models import Addressee, Ticket
from tests.api.world import PASSWORD, World, add_relations, build_world
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.db

STATUS = {"F": 403, "N": 404, "U": 422}


@dataclass(frozen=True, slots=True)
class TicketSpec:
    """A ticket seeded for one column: its customer, partner account and addressee."""

    customer: str
    partner: str | None
    addressed_to: Addressee = Addressee.RESELLER


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    caller: str | None  # None: no bearer token
    target: str | None = None  # tenant name, for tenant routes and POST /tickets
    ticket: TicketSpec | str | None = None  # str: a number nobody holds


# --- the columns ------------------------------------------------------------------------------

# Tenant routes: the caller and the tenant named in the path (or in the body).
TENANT_COLUMNS = (
    # operator
    Column("op/own", "op", "operator"),
    Column("op/reseller", "op", "alpha"),
    Column("op/customer", "op", "opted_in"),
    # the customer's own members
    Column("customer/admin", "opted_in_admin", "opted_in"),
    Column("customer/user", "opted_in_user", "opted_in"),
    # the reseller's own members, in the reseller's tenant
    Column("reseller/admin", "alpha_admin", "alpha"),
    Column("reseller/partner", "alpha_partner", "alpha"),
    Column("reseller/user", "alpha_user", "alpha"),
    # delegates: every check of §2 passes
    Column("delegate/opted-in", "alpha_partner", "opted_in"),
    Column("delegate/eu-dpa", "alpha_partner", "eu_dpa"),
    Column("delegate/distributor-as-reseller", "dist_partner", "dist_as_reseller"),
    # no standing: one check of §2 fails, or no relation at all
    Column("bola/admin", "opted_in_admin", "opted_out"),
    Column("bola/user", "opted_in_user", "opted_out"),
    Column("customer-admin/own-reseller", "opted_in_admin", "alpha"),
    Column("linked/opted-out", "alpha_partner", "opted_out"),
    Column("linked/expired", "alpha_partner", "expired"),
    Column("unlinked", "alpha_partner", "unlinked"),
    Column("other-reseller's-customer", "alpha_partner", "other_reseller"),
    Column("eu-customer/dpa-one-way", "alpha_partner", "eu_no_dpa"),
    Column("eu-customer/dpa-other-way", "alpha_partner", "eu_dpa_reverse"),
    Column("eu-reseller/no-dpa", "eu_partner", "eu_reseller_no_dpa"),
    Column("reseller-role-disabled", "gamma_partner", "gamma_customer"),
    Column("unpaid-partner", "alpha_unpaid_partner", "opted_in"),
    Column("reseller-admin/no-partner-role", "alpha_admin", "opted_in"),
    Column("reseller-user/no-partner-role", "alpha_user", "opted_in"),
    Column("distributor/linked-as-distributor", "dist_partner", "opted_in"),
    Column("distributor/not-acting-as-reseller", "plain_dist_partner", "plain_dist_customer"),
    Column("partner/operator-tenant", "alpha_partner", "operator"),
    Column("other-partner/alpha's-customer", "beta_partner", "opted_in"),
)

# Routes without a target: the caller decides.
CALLER_COLUMNS = (
    Column("op", "op"),
    Column("customer/admin", "opted_in_admin"),
    Column("customer/user", "opted_in_user"),
    Column("reseller/admin", "alpha_admin"),
    Column("reseller/partner", "alpha_partner"),
    Column("reseller/user", "alpha_user"),
    Column("unpaid-partner", "alpha_unpaid_partner"),
    Column("reseller-role-disabled", "gamma_partner"),
    Column("distributor-as-reseller", "dist_partner"),
    Column("eu-partner", "eu_partner"),
    Column("distributor/not-acting-as-reseller", "plain_dist_partner"),
)

PUBLIC_COLUMNS = (Column("anonymous", None),)

# Ticket routes: the caller and one ticket seeded for the column (§7 visibility).
TICKET_COLUMNS = (
    Column("op", "op", ticket=TicketSpec("opted_in", "alpha")),
    Column("customer/admin", "opted_in_admin", ticket=TicketSpec("opted_in", "alpha")),
    Column("customer/user", "opted_in_user", ticket=TicketSpec("opted_in", "alpha")),
    # the partner account's own tickets
    Column("partner/own", "alpha_partner", ticket=TicketSpec("opted_in", "alpha")),
    Column("partner/own/opted-out", "alpha_partner", ticket=TicketSpec("opted_out", "alpha")),
    Column("partner/own/link-gone", "alpha_partner", ticket=TicketSpec("unlinked", "alpha")),
    Column(
        "partner/own/escalated",
        "alpha_partner",
        ticket=TicketSpec("opted_in", "alpha", Addressee.OPERATOR),
    ),
    Column("distributor/own", "dist_partner", ticket=TicketSpec("dist_as_reseller", "dist")),
    # not visible to the caller
    Column(
        "partner/customer-raised",
        "alpha_partner",
        ticket=TicketSpec("opted_in", None, Addressee.OPERATOR),
    ),
    Column("partner/other-account", "alpha_partner", ticket=TicketSpec("other_reseller", "beta")),
    Column("other-partner", "beta_partner", ticket=TicketSpec("opted_in", "alpha")),
    Column("other-customer/admin", "opted_out_admin", ticket=TicketSpec("opted_in", "alpha")),
    Column("unpaid-partner", "alpha_unpaid_partner", ticket=TicketSpec("opted_in", "alpha")),
    Column("reseller-role-disabled", "gamma_partner", ticket=TicketSpec("gamma_customer", "gamma")),
    Column("reseller-admin", "alpha_admin", ticket=TicketSpec("opted_in", "alpha")),
    # numbers nobody holds
    Column("unknown-number", "op", ticket="NA99999999"),
    Column("malformed-number", "op", ticket="na00000001"),
)


# --- the seeds every column needs ----------------------------------------------------------------


COUNTER = itertools.count(1)  # module-wide: names, MACs and numbers are never reused


@dataclass
class Seeds:
    """The world plus what the columns act on: spares, so no cell disturbs a later one."""

    world: World
    now: dt.datetime
    subjects: dict[str, int] = field(default_factory=dict)  # tenant -> a plain user's id
    spare_dpas: dict[str, int] = field(default_factory=dict)  # tenant -> a DPA to withdraw
    spare_tokens: dict[str, int] = field(default_factory=dict)  # user -> an API token's id
    logout_tokens: dict[str, str] = field(default_factory=dict)  # user -> a token to revoke
    tickets: dict[str, str] = field(default_factory=dict)  # column -> ticket number
    devices: dict[str, int] = field(default_factory=dict)  # column -> its own device's id
    unclaimed: dict[str, str] = field(default_factory=dict)  # column -> an unclaimed MAC
    groups: dict[str, int] = field(default_factory=dict)  # tenant -> a device group's id
    rollouts: dict[str, int] = field(default_factory=dict)  # column -> its own rollout's id

    def tenant(self, name: str) -> Tenant:
        return self.world.tenants[name]

    def tid(self, name: str) -> str:
        return self.world.tid(name)

    def unique(self) -> int:
        return next(COUNTER)

    def mac(self, kind: int) -> str:
        """A MAC nobody holds yet; ``kind`` keeps seeded and requested ones apart."""
        return f"001565{kind:x}{self.unique():05x}"


async def seed(client: TestClient[Any, Any], services: Services, world: World, row: Row) -> Seeds:
    """The spares the row's columns act on, in the module's world."""
    columns = row.columns
    seeds = Seeds(world, utcnow())
    async with services.sessions() as session, session.begin():
        op = world.users["op"]
        if columns is TENANT_COLUMNS:
            for name in world.tenants:
                subject = User(
                    tenant_id=world.tid(name), username=f"{name}_subject{seeds.unique()}"
                )
                session.add(subject)
                await session.flush()
                seeds.subjects[name] = subject.id
                # With the operator's tenant: a DPA no access check ever looks at.
                other = "alpha" if name == "operator" else "operator"
                dpa = Dpa(
                    from_tenant_id=world.tid(name),
                    to_tenant_id=world.tid(other),
                    signed_on=dt.date(2000, 1, 1) + dt.timedelta(days=seeds.unique()),
                    recorded_by=op.id,
                )
                session.add(dpa)
                await session.flush()
                seeds.spare_dpas[name] = dpa.id
        if "{device_id}" in row.route:
            unify = any(part in row.route for part in ("/jobs", "/wpi", "/secure-mode"))
            for column in columns:
                assert column.target is not None
                device = Device(
                    mac=seeds.mac(0xA),
                    vendor="unify" if unify else "yealink",
                    model="OpenScape Desk Phone CP600" if unify else "T46U",
                    tenant_id=world.tid(column.target),
                    user_id=seeds.subjects[column.target],
                    status=DeviceStatus.ASSIGNED,
                )
                session.add(device)
                await session.flush()
                seeds.devices[column.name] = device.id
                if unify:
                    # What the WPI device path knows of it: a phone in secure mode.
                    from dls.devices.unify import WpiDevice

                    session.add(WpiDevice(mac=device.mac, bound=True, secure_since=seeds.now))
        if "/firmware/" in row.route:
            await seed_firmware(session, seeds, row)
        if "{group_id}" in row.route:
            for column in columns:  # one per column: a cell may delete its group
                if column.target is None:
                    continue
                group = DeviceGroup(
                    tenant_id=world.tid(column.target), name=f"Room {seeds.unique()}"
                )
                session.add(group)
                await session.flush()
                seeds.groups[column.name] = group.id
        if row.route.endswith("/claim"):
            for column in columns:
                seeds.unclaimed[column.name] = seeds.mac(0xB)
                session.add(
                    UnclaimedDevice(
                        mac=seeds.unclaimed[column.name], vendor="yealink", model="T46U"
                    )
                )
        if columns is CALLER_COLUMNS:
            for name in [c.caller for c in columns] + ["opted_out_admin"]:
                assert name is not None
                _, spare = issue_token(session, world.users[name], TokenKind.API, name="spare")
                await session.flush()
                seeds.spare_tokens[name] = spare.id
                seeds.logout_tokens[name], _ = issue_token(
                    session, world.users[name], TokenKind.SESSION
                )
        if columns is PUBLIC_COLUMNS:
            login = await session.get(User, op.id)
            assert login is not None
            login.password_hash = hash_password(PASSWORD)
        if columns is TICKET_COLUMNS:
            for column in columns:
                if isinstance(column.ticket, TicketSpec):
                    seeds.tickets[column.name] = f"NA{seeds.unique():08d}"
                    session.add(ticket_for(seeds, column.ticket, seeds.tickets[column.name]))
                elif column.ticket is not None:
                    seeds.tickets[column.name] = column.ticket
    if row.route == "GET /tenants/{tenant_id}/users/{user_id}/deployment-pin":
        # Through the API, as the operator: every subject and every caller gets a PIN.
        homes = {user.id: user.tenant_id for user in world.users.values()}
        homes |= {user_id: world.tid(tenant) for tenant, user_id in seeds.subjects.items()}
        owners = {seeds.subjects[c.target or ""] for c in columns}
        owners |= {world.users[c.caller or ""].id for c in columns}
        for user_id in owners:
            response = await client.post(
                f"{API_PREFIX}/tenants/{homes[user_id]}/users/{user_id}/deployment-pin",
                json={"line": 1},
                headers=world.auth("op"),
            )
            assert response.status == 201, await response.text()
    return seeds


FIRMWARE = {"vendor": "yealink", "model": "T46U", "version": "108.99.0.1"}


async def seed_firmware(session: AsyncSession, seeds: Seeds, row: Row) -> None:
    """An imported image (once per world) and, for rollout routes, a device per column, in
    a running rollout of its own for the routes that name one."""
    key = ("yealink", "t46u", FIRMWARE["version"])
    if await session.get(FirmwareImageModel, key) is None:
        image = FirmwareImage(
            vendor="yealink",
            version=FIRMWARE["version"],
            version_key=FIRMWARE["version"],
            models=["T46U"],
            sha256="0" * 64,
            size=1,
            file_name="T46U-108.99.0.1.rom",
            checksum_source=ChecksumSource.OPERATOR,
        )
        session.add(image)
        await session.flush()
        session.add(
            FirmwareImageModel(
                vendor=key[0], model_key=key[1], version_key=key[2], image_id=image.id
            )
        )
    if "/rollouts" not in row.route:
        return
    for column in row.columns:
        # Operator rollouts leave out devices whose tenant set its own target (another row
        # of this world sets some): "unlinked" never gets one.
        tenant = column.target or "unlinked"
        device = Device(
            mac=seeds.mac(0xE),
            vendor="yealink",
            model="T46U",
            tenant_id=seeds.tid(tenant),
            firmware_version="108.86.0.90",
        )
        session.add(device)
        await session.flush()
        seeds.devices[column.name] = device.id
        if "{rollout_id}" not in row.route:
            continue
        rollout = Rollout(
            name="Seeded",
            tenant_id=seeds.tid(tenant) if row.columns is TENANT_COLUMNS else None,
            targets=[FIRMWARE],
            status=RolloutStatus.RUNNING,
            failure_threshold_percent=10,
            wave_timeout_seconds=3600,
            excluded={},
        )
        session.add(rollout)
        await session.flush()
        session.add(RolloutWave(rollout_id=rollout.id, wave=0, size=1, status=WaveStatus.ACTIVE))
        session.add(
            RolloutDevice(
                rollout_id=rollout.id,
                device_id=device.id,
                wave=0,
                vendor="yealink",
                model="T46U",
                version=FIRMWARE["version"],
                version_key=FIRMWARE["version"],
                state=DeviceState.OFFERED,
            )
        )
        seeds.rollouts[column.name] = rollout.id


def ticket_for(seeds: Seeds, spec: TicketSpec, number: str) -> Ticket:
    earlier = seeds.now - dt.timedelta(hours=1)
    return Ticket(
        number=number,
        customer_tenant_id=seeds.tid(spec.customer),
        partner_account_id=seeds.tid(spec.partner) if spec.partner else None,
        addressed_to=spec.addressed_to,
        subject="Handsets lose registration",
        description="Since this morning the phones on floor 2 drop their SIP registration.",
        support_level=3,
        language="en-GB",
        company=spec.customer,
        occurred_at=earlier,
        reported_at=earlier,
        submitter_id=seeds.world.users["op"].id,
        requester="Front desk",
    )


# --- one database and one world for the module ------------------------------------------------


WORLDS: dict[str, World] = {}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Overrides the per-test database of tests/conftest.py with one for the module."""
    WORLDS.clear()
    if not TEST_DATABASE_URL:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('matrix') / 'matrix.sqlite3'}"
    asyncio.run(empty_schema(TEST_DATABASE_URL))
    return TEST_DATABASE_URL


async def empty_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture
async def world(services: Services, database_url: str) -> World:
    """The module's world, built by the first test that needs it."""
    if database_url not in WORLDS:
        async with services.sessions() as session, session.begin():
            built = await build_world(session)
            await add_relations(session, built)
        WORLDS[database_url] = built
    return WORLDS[database_url]


# --- the requests ----------------------------------------------------------------------------

Body = Callable[[Seeds, Column], Any]


def constant(value: Any) -> Body:
    return lambda seeds, column: value


def tenant_update(seeds: Seeds, column: Column) -> Any:
    return {"name": f"Renamed {seeds.unique()}"}


def registration_update(seeds: Seeds, column: Column) -> Any:
    # Re-sends the current value: ``eu`` decides the DPA check of later cells.
    return {"eu": seeds.tenant(column.target or "").eu}


def partner_ids(seeds: Seeds, column: Column) -> Any:
    tenant = seeds.tenant(column.target or "")
    if tenant.kind is TenantKind.CUSTOMER:
        return {"reseller_partner_id": tenant.reseller_partner_id}
    if tenant.kind is TenantKind.OPERATOR:
        return {}
    return {"partner_admin_id": tenant.partner_admin_id}


def reseller_role(seeds: Seeds, column: Column) -> Any:
    return {"enabled": seeds.tenant(column.target or "").reseller_enabled}


def partner_access(seeds: Seeds, column: Column) -> Any:
    tenant = seeds.tenant(column.target or "")
    expires = tenant.partner_access_expires_at
    return {"enabled": tenant.partner_access and (expires is None or expires > seeds.now)}


def dpa_create(seeds: Seeds, column: Column) -> Any:
    tenant = seeds.tenant(column.target or "")
    if tenant.kind is TenantKind.CUSTOMER:
        counterparty = next(
            (
                t
                for t in seeds.world.tenants.values()
                if t.partner_admin_id and t.partner_admin_id == tenant.reseller_partner_id
            ),
            seeds.tenant("alpha"),
        )
    elif tenant.kind is TenantKind.OPERATOR:
        counterparty = seeds.tenant("alpha")
    else:
        counterparty = next(
            (
                t
                for t in seeds.world.tenants.values()
                if t.reseller_partner_id and t.reseller_partner_id == tenant.partner_admin_id
            ),
            seeds.tenant("operator"),
        )
    return {
        "counterparty_tenant_id": counterparty.tenant_id,
        "direction": "outgoing",
        "signed_on": (dt.date(2025, 1, 1) + dt.timedelta(days=seeds.unique())).isoformat(),
        "document_ref": "DPA scan in the contract folder",
    }


def new_user(role: Role) -> Body:
    def build(seeds: Seeds, column: Column) -> Any:
        n = seeds.unique()
        return {
            "username": f"new.user{n}",
            "display_name": f"New User {n}",
            "email": f"new.user{n}@example.com",
            "role": role.value,
        }

    return build


def new_tenant(seeds: Seeds, column: Column) -> Any:
    return {"kind": "customer", "name": f"Matrix Customer {seeds.unique()}", "country": "DE"}


def new_order(seeds: Seeds, column: Column) -> Any:
    n = seeds.unique()
    return {"order_id": f"ORD-{n}", "name": f"Ordered Customer {n}", "country": "US"}


def new_token(seeds: Seeds, column: Column) -> Any:
    return {"name": f"provisioning script {seeds.unique()}"}


def new_ticket(seeds: Seeds, column: Column) -> Any:
    return {
        "customer_tenant_id": seeds.tid(column.target or ""),
        "subject": "Handsets lose registration",
        "description": "Since this morning the phones on floor 2 drop their SIP registration.",
        "support_level": 3,
        "language": "en-GB",
        "occurred_at": (seeds.now - dt.timedelta(hours=2)).isoformat(),
    }


def new_device(seeds: Seeds, column: Column) -> Any:
    return {"mac": seeds.mac(0xC), "vendor": "yealink", "model": "T46U", "user_line": 1}


def device_import(seeds: Seeds, column: Column) -> Any:
    return {"csv": f"mac,model,user,line\n{seeds.mac(0xD)},T46U,,\n"}


def claim(seeds: Seeds, column: Column) -> Any:
    return {"mac": seeds.unclaimed[column.name], "user_line": 1}


def new_group(seeds: Seeds, column: Column) -> Any:
    return {"name": f"Floor {seeds.unique()}"}


SETTINGS = {"settings": {"time": {"time_zone": "Europe/Berlin"}}}
LINE_SETTINGS = {"settings": {"lines": {"1": {"sip_user": "201", "display_name": "Front Desk"}}}}


def explanation_query(seeds: Seeds, column: Column) -> dict[str, str]:
    return {"user_id": str(seeds.world.users["alpha_partner"].id)}


def path_ids(seeds: Seeds, column: Column) -> dict[str, str]:
    ids: dict[str, str] = {}
    if column.target is not None:
        ids["tenant_id"] = seeds.tid(column.target)
        ids["user_id"] = str(seeds.subjects.get(column.target, ""))
        ids["dpa_id"] = str(seeds.spare_dpas.get(column.target, ""))
    if column.caller in seeds.spare_tokens:
        ids["token_id"] = str(seeds.spare_tokens[column.caller])
    if column.name in seeds.tickets:
        ids["number"] = seeds.tickets[column.name]
    if column.name in seeds.devices:
        ids["device_id"] = str(seeds.devices[column.name])
    if column.name in seeds.groups:
        ids["group_id"] = str(seeds.groups[column.name])
    if column.name in seeds.rollouts:
        ids["rollout_id"] = str(seeds.rollouts[column.name])
    return ids


def new_rollout(seeds: Seeds, column: Column) -> Any:
    return {
        "name": f"Rollout {seeds.unique()}",
        "targets": [FIRMWARE],
        "waves": [{"devices": [seeds.devices[column.name]]}],
    }


def image_query(seeds: Seeds, column: Column) -> dict[str, str]:
    return {"vendor": "yealink", "version": f"108.98.0.{seeds.unique()}", "models": "T46U"}


def own_user(seeds: Seeds, column: Column) -> dict[str, str]:
    return {**path_ids(seeds, column), "user_id": str(seeds.world.users[column.caller or ""].id)}


def victim_token(seeds: Seeds, column: Column) -> dict[str, str]:
    return {"token_id": str(seeds.spare_tokens["opted_out_admin"])}


def bearer(seeds: Seeds, column: Column) -> dict[str, str]:
    return seeds.world.auth(column.caller) if column.caller else {}


def logout_bearer(seeds: Seeds, column: Column) -> dict[str, str]:
    # The route revokes the token it is called with: a spare one, not the world's.
    return {"Authorization": f"Bearer {seeds.logout_tokens[column.caller or '']}"}


@dataclass(frozen=True, slots=True)
class Row:
    route: str  # "METHOD /path" as declared, without the API prefix
    ok: int  # the success status
    expected: str  # one code per column
    columns: tuple[Column, ...]
    body: Body | None = None
    variant: str = ""
    query: Callable[[Seeds, Column], dict[str, str]] | None = None
    ids: Callable[[Seeds, Column], dict[str, str]] = path_ids
    auth: Callable[[Seeds, Column], dict[str, str]] = bearer

    @property
    def id(self) -> str:
        return f"{self.route} [{self.variant}]" if self.variant else self.route


def tenant_row(route: str, ok: int, expected: str, body: Body | None = None, **more: Any) -> Row:
    return Row(route, ok, expected, TENANT_COLUMNS, body, **more)


def caller_row(route: str, ok: int, expected: str, body: Body | None = None, **more: Any) -> Row:
    return Row(route, ok, expected, CALLER_COLUMNS, body, **more)


def ticket_row(route: str, ok: int, expected: str, body: Body | None = None, **more: Any) -> Row:
    return Row(route, ok, expected, TICKET_COLUMNS, body, **more)


# --- the matrix ---------------------------------------------------------------------------------

# Tenant rows. Columns: operator (own, reseller, customer) | customer (admin, user) |
# reseller in its own tenant (admin, partner admin, user) | delegates (opted-in, EU with
# DPAs, distributor acting as reseller) | the 18 relations without standing (§2: 404).
# The partner admin in its own reseller tenant is no admin of it: it reads the tenant and
# its audit log, nothing else. Delegates lose exactly the §3 exclusions.
NO_STANDING = "NNNNNNNNNNNNNNNNNN"
ROWS = (
    tenant_row("GET /tenants/{tenant_id}", 200, "AAA AA AAA AAA " + NO_STANDING),
    tenant_row(
        "PATCH /tenants/{tenant_id}",
        200,
        "AAA AF AFF AAA " + NO_STANDING,
        tenant_update,
        variant="name",
    ),
    tenant_row(
        "PATCH /tenants/{tenant_id}",
        200,
        "AAA AF AFF AAA " + NO_STANDING,
        constant({"self_setup_allowed": False}),
        variant="user self-setup",
    ),
    # MAC-only device trust weakens the customer's security: its own decision (§3
    # recommends excluding the customer's authentication settings from delegates).
    tenant_row(
        "PATCH /tenants/{tenant_id}",
        200,
        "AAA AF AFF FFF " + NO_STANDING,
        constant({"legacy_mac_only": False}),
        variant="device trust",
    ),
    # Country and EU membership decide the DPA rule: the operator's, like the partner IDs.
    tenant_row(
        "PATCH /tenants/{tenant_id}",
        200,
        "AAA FF FFF FFF " + NO_STANDING,
        registration_update,
        variant="registration",
    ),
    tenant_row(
        "PUT /tenants/{tenant_id}/partner-ids", 200, "AAA FF FFF FFF " + NO_STANDING, partner_ids
    ),
    # Only resellers and distributors have a reseller role.
    tenant_row(
        "PUT /tenants/{tenant_id}/reseller-role",
        200,
        "UAU FF FFF FFF " + NO_STANDING,
        reseller_role,
    ),
    tenant_row("GET /tenants/{tenant_id}/partner-access", 200, "AAA AF AFF AAA " + NO_STANDING),
    # §3: only the customer's own admins switch it, not even the operator; a reseller has
    # no switch.
    tenant_row(
        "PUT /tenants/{tenant_id}/partner-access",
        200,
        "FFF AF UFF FFF " + NO_STANDING,
        partner_access,
    ),
    tenant_row("GET /tenants/{tenant_id}/dpas", 200, "AAA AF AFF AAA " + NO_STANDING),
    tenant_row("POST /tenants/{tenant_id}/dpas", 201, "AAA AF AFF FFF " + NO_STANDING, dpa_create),
    tenant_row(
        "POST /tenants/{tenant_id}/dpas/{dpa_id}/withdraw", 200, "AAA AF AFF FFF " + NO_STANDING
    ),
    tenant_row("GET /tenants/{tenant_id}/users", 200, "AAA AF AFF AAA " + NO_STANDING),
    tenant_row(
        "POST /tenants/{tenant_id}/users",
        201,
        "AAA AF AFF AAA " + NO_STANDING,
        new_user(Role.USER),
        variant="user",
    ),
    tenant_row(
        "POST /tenants/{tenant_id}/users",
        201,
        "AAA AF AFF FFF " + NO_STANDING,
        new_user(Role.TENANT_ADMIN),
        variant="admin",
    ),
    tenant_row("GET /tenants/{tenant_id}/users/{user_id}", 200, "AAA AF AFF AAA " + NO_STANDING),
    tenant_row(
        "PATCH /tenants/{tenant_id}/users/{user_id}",
        200,
        "AAA AF AFF AAA " + NO_STANDING,
        constant({"display_name": "Renamed User"}),
        variant="profile",
    ),
    tenant_row(
        "PATCH /tenants/{tenant_id}/users/{user_id}",
        200,
        "AAA AF AFF AAA " + NO_STANDING,
        constant({"self_setup_override": False}),
        variant="user self-setup",
    ),
    tenant_row(
        "PUT /tenants/{tenant_id}/users/{user_id}/role",
        200,
        "AAA AF AFF FFF " + NO_STANDING,
        constant({"role": "tenant_admin"}),
    ),
    tenant_row("GET /tenants/{tenant_id}/audit", 200, "AAA AF AAF AAA " + NO_STANDING),
    tenant_row(
        "GET /tenants/{tenant_id}/access-explanation",
        200,
        "AAA FF FFF FFF " + NO_STANDING,
        query=explanation_query,
    ),
    # Phones, their groups and settings, sending them out: a customer admin's day-to-day
    # work, so a delegate's too (§3 "Allowed"); a plain user manages none of it.
    *[
        tenant_row(route, ok, "AAA AF AFF AAA " + NO_STANDING, body)
        for route, ok, body in (
            ("GET /tenants/{tenant_id}/devices", 200, None),
            ("POST /tenants/{tenant_id}/devices", 201, new_device),
            ("GET /tenants/{tenant_id}/devices/{device_id}", 200, None),
            ("PATCH /tenants/{tenant_id}/devices/{device_id}", 200, constant({"user_line": 1})),
            (
                "POST /tenants/{tenant_id}/devices/{device_id}/send",
                200,
                constant({"shipment_ref": "DHL 00340434161234567890"}),
            ),
            ("POST /tenants/{tenant_id}/devices/{device_id}/retire", 200, None),
            ("POST /tenants/{tenant_id}/devices/{device_id}/digest-credentials", 200, constant({})),
            ("POST /tenants/{tenant_id}/devices/{device_id}/client-certificate", 201, None),
            ("DELETE /tenants/{tenant_id}/devices/{device_id}/client-certificate", 204, None),
            ("POST /tenants/{tenant_id}/devices/import", 200, device_import),
            ("POST /tenants/{tenant_id}/devices/claim", 201, claim),
            ("GET /tenants/{tenant_id}/devices/{device_id}/ledger", 200, None),
            ("GET /tenants/{tenant_id}/outdated-devices", 200, None),
            ("GET /tenants/{tenant_id}/settings", 200, None),
            ("PUT /tenants/{tenant_id}/settings", 200, constant(SETTINGS)),
            ("GET /tenants/{tenant_id}/groups", 200, None),
            ("POST /tenants/{tenant_id}/groups", 201, new_group),
            ("PATCH /tenants/{tenant_id}/groups/{group_id}", 200, new_group),
            ("DELETE /tenants/{tenant_id}/groups/{group_id}", 204, None),
            ("GET /tenants/{tenant_id}/groups/{group_id}/settings", 200, None),
            ("PUT /tenants/{tenant_id}/groups/{group_id}/settings", 200, constant(SETTINGS)),
            ("GET /tenants/{tenant_id}/users/{user_id}/settings", 200, None),
            ("PUT /tenants/{tenant_id}/users/{user_id}/settings", 200, constant(LINE_SETTINGS)),
            ("GET /tenants/{tenant_id}/devices/{device_id}/settings", 200, None),
            ("PUT /tenants/{tenant_id}/devices/{device_id}/settings", 200, constant(SETTINGS)),
            ("GET /tenants/{tenant_id}/devices/{device_id}/effective-config", 200, None),
        )
    ],
    # Unify phones. Jobs are day-to-day work, but a factory reset wipes the phone and
    # turning secure mode off weakens device trust: the customer's own admins decide.
    tenant_row(
        "POST /tenants/{tenant_id}/devices/{device_id}/jobs",
        201,
        "AAA AF AFF AAA " + NO_STANDING,
        constant({"kind": "restart"}),
        variant="restart",
    ),
    tenant_row(
        "POST /tenants/{tenant_id}/devices/{device_id}/jobs",
        201,
        "AAA AF AFF FFF " + NO_STANDING,
        constant({"kind": "factory-reset"}),
        variant="factory reset",
    ),
    tenant_row(
        "GET /tenants/{tenant_id}/devices/{device_id}/jobs", 200, "AAA AF AFF AAA " + NO_STANDING
    ),
    tenant_row(
        "GET /tenants/{tenant_id}/devices/{device_id}/wpi", 200, "AAA AF AFF AAA " + NO_STANDING
    ),
    tenant_row(
        "POST /tenants/{tenant_id}/devices/{device_id}/secure-mode/reset",
        200,
        "AAA AF AFF FFF " + NO_STANDING,
    ),
    tenant_row("GET /tenants/{tenant_id}/wpi-secure-mode", 200, "AAA AF AFF AAA " + NO_STANDING),
    tenant_row(
        "PUT /tenants/{tenant_id}/wpi-secure-mode",
        200,
        "AAA AF AFF FFF " + NO_STANDING,
        constant({"mode": "bootstrap"}),
    ),
    # Deployment PINs: admins and delegates (§5: their reads are audited) read and renew
    # anyone's; every member reads its own, but only in its own tenant.
    tenant_row(
        "GET /tenants/{tenant_id}/users/{user_id}/deployment-pin",
        200,
        "AAA AF AFF AAA " + NO_STANDING,
        variant="another user's",
    ),
    tenant_row(
        "GET /tenants/{tenant_id}/users/{user_id}/deployment-pin",
        200,
        "ANN AA AAA NNN " + NO_STANDING,
        variant="own",
        ids=own_user,
    ),
    tenant_row(
        "POST /tenants/{tenant_id}/users/{user_id}/deployment-pin",
        201,
        "AAA AF AFF AAA " + NO_STANDING,
        constant({"line": 1, "valid_days": 30}),
    ),
    # Columns: operator | customer (admin, user) | reseller (admin, partner admin, user) |
    # partner admins (unpaid, reseller role disabled, distributor as reseller, EU reseller,
    # distributor without the reseller role).
    # Firmware: a tenant's own targets and rollouts are day-to-day work (delegates too).
    *[
        tenant_row(route, ok, "AAA AF AFF AAA " + NO_STANDING, body)
        for route, ok, body in (
            ("GET /tenants/{tenant_id}/firmware/images", 200, None),
            ("GET /tenants/{tenant_id}/firmware/targets", 200, None),
            ("PUT /tenants/{tenant_id}/firmware/targets", 200, constant(FIRMWARE)),
            ("GET /tenants/{tenant_id}/firmware/rollouts", 200, None),
            ("POST /tenants/{tenant_id}/firmware/rollouts", 201, new_rollout),
            ("GET /tenants/{tenant_id}/firmware/rollouts/{rollout_id}", 200, None),
            ("GET /tenants/{tenant_id}/firmware/rollouts/{rollout_id}/devices", 200, None),
            ("POST /tenants/{tenant_id}/firmware/rollouts/{rollout_id}/pause", 200, None),
            ("POST /tenants/{tenant_id}/firmware/rollouts/{rollout_id}/resume", 200, constant({})),
            ("POST /tenants/{tenant_id}/firmware/rollouts/{rollout_id}/abort", 200, None),
        )
    ],
    caller_row("GET /tenants", 200, "A FF FFF FFFFF"),
    caller_row("POST /tenants", 201, "A FF FFF FFFFF", new_tenant),
    caller_row("POST /orders", 200, "A FF FFF FFFFF", new_order),
    caller_row("GET /unclaimed-devices", 200, "A FF FFF FFFFF"),
    # Images, the operator's default versions and cross-tenant rollouts: operators only.
    caller_row(
        "POST /firmware/images", 201, "A FF FFF FFFFF", constant({"an": "image"}), query=image_query
    ),
    caller_row("GET /firmware/images", 200, "A FF FFF FFFFF"),
    caller_row("GET /firmware/targets", 200, "A FF FFF FFFFF"),
    caller_row("PUT /firmware/targets", 200, "A FF FFF FFFFF", constant(FIRMWARE)),
    caller_row("GET /firmware/rollouts", 200, "A FF FFF FFFFF"),
    caller_row("POST /firmware/rollouts", 201, "A FF FFF FFFFF", new_rollout),
    caller_row("GET /firmware/rollouts/{rollout_id}", 200, "A FF FFF FFFFF"),
    caller_row("GET /firmware/rollouts/{rollout_id}/devices", 200, "A FF FFF FFFFF"),
    caller_row("POST /firmware/rollouts/{rollout_id}/pause", 200, "A FF FFF FFFFF"),
    caller_row("POST /firmware/rollouts/{rollout_id}/resume", 200, "A FF FFF FFFFF", constant({})),
    caller_row("POST /firmware/rollouts/{rollout_id}/abort", 200, "A FF FFF FFFFF"),
    caller_row("GET /system/settings", 200, "A FF FFF FFFFF"),
    caller_row("PUT /system/settings", 200, "A FF FFF FFFFF", constant(SETTINGS)),
    # The picker answers every partner admin; what it may list: test_security_partner_ids.py.
    caller_row("GET /partner/tenants", 200, "F FF FAF AAAAA"),
    caller_row("GET /audit", 200, "A AF AAF AAAAA"),
    caller_row("GET /me", 200, "A AA AAA AAAAA"),
    caller_row("GET /me/tokens", 200, "A AA AAA AAAAA"),
    caller_row("POST /me/tokens", 201, "A AA AAA AAAAA", new_token),
    caller_row("DELETE /me/tokens/{token_id}", 204, "A AA AAA AAAAA", variant="own"),
    caller_row(
        "DELETE /me/tokens/{token_id}",
        204,
        "N NN NNN NNNNN",
        variant="another user's",
        ids=victim_token,
    ),
    caller_row("POST /auth/logout", 204, "A AA AAA AAAAA", auth=logout_bearer),
    Row(
        "POST /auth/login",
        200,
        "A",
        PUBLIC_COLUMNS,
        constant({"username": "op", "password": PASSWORD}),
    ),
    # Tickets, by caller. Standing (§7): the operator, paid partner admins of a tenant with
    # the reseller role, customer admins. Without it the function itself is refused (403);
    # it names no tenant, so nothing is revealed.
    caller_row("GET /tickets", 200, "A AF FAF FFAAF"),
    # Raising one, by the customer it names (§7: checks 1-3 and 5; the project decided the
    # opt-in is not needed, reference §9 open point). Callers without ticket standing get
    # the function-level 403 whatever the customer; with standing, a customer they may not
    # raise for is 404.
    tenant_row(
        "POST /tickets",
        201,
        "NNA AF FNF AAA NFNAANNNNNFFFFNFNN",
        new_ticket,
    ),
    # By ticket. Columns: operator, customer admin, customer user | the partner account's
    # own (opted in, opted out, link gone since, escalated to the operator, distributor
    # acting as reseller) | not the caller's (raised by the customer, other account, other
    # partner, other customer's admin, unpaid, reseller role disabled, reseller admin) |
    # unknown and malformed numbers.
    ticket_row("GET /tickets/{number}", 200, "AAN AAAAA NNNNNNN NN"),
    ticket_row(
        "PATCH /tickets/{number}",
        200,
        "AFN AAFFA NNNNNNN NN",
        constant({"state": "in_progress"}),
    ),
    ticket_row(
        "POST /tickets/{number}/comments",
        201,
        "AAN AAFAA NNNNNNN NN",
        constant({"body": "Rebooted the switch; please check again.", "public": True}),
    ),
    ticket_row("POST /tickets/{number}/escalate", 200, "AFN AAFFA NNNNNNN NN"),
)


def declared_routes() -> set[str]:
    return {f"{e.method} {e.path.removeprefix(API_PREFIX)}" for e in api.endpoints}


def test_every_route_has_a_row() -> None:
    missing = declared_routes() - {row.route for row in ROWS}
    assert not missing, f"routes without an authorization matrix row: {sorted(missing)}"


def test_every_row_names_a_declared_route() -> None:
    stale = {row.route for row in ROWS} - declared_routes()
    assert not stale, f"matrix rows for routes that do not exist: {sorted(stale)}"


def test_only_login_is_public() -> None:
    public = {f"{e.method} {e.path.removeprefix(API_PREFIX)}" for e in api.endpoints if e.public}
    assert public == {row.route for row in ROWS if row.columns is PUBLIC_COLUMNS}


def test_rows_have_one_code_per_column() -> None:
    for row in ROWS:
        codes = row.expected.replace(" ", "")
        assert len(codes) == len(row.columns), row.id
        assert set(codes) <= {"A", *STATUS}, row.id


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_matrix(
    client: TestClient[Any, Any], services: Services, world: World, row: Row
) -> None:
    seeds = await seed(client, services, world, row)
    method, path = row.route.split(" ", 1)
    wrong = []
    for column, code in zip(row.columns, row.expected.replace(" ", ""), strict=True):
        response = await client.request(
            method,
            API_PREFIX + path.format_map(row.ids(seeds, column)),
            json=row.body(seeds, column) if row.body else None,
            params=row.query(seeds, column) if row.query else None,
            headers=row.auth(seeds, column),
        )
        expected = row.ok if code == "A" else STATUS[code]
        if response.status != expected:
            answer = (await response.text())[:160]
            wrong.append(
                f"{column.name} ({column.caller} -> {column.target or column.ticket}): "
                f"expected {expected}, got {response.status} {answer}"
            )
    assert not wrong, f"{row.id}:\n" + "\n".join(wrong)


async def test_every_route_but_login_wants_a_token(client: TestClient[Any, Any]) -> None:
    ids = collections.defaultdict(lambda: "1", tenant_id="100000000001", number="NA00000001")
    wrong = []
    for endpoint in api.endpoints:
        if endpoint.public:
            continue
        response = await client.request(
            endpoint.method, endpoint.path.format_map(ids), json={"unknown": "field"}
        )
        if response.status != 401:
            wrong.append(f"{endpoint.method} {endpoint.path}: {response.status}")
    assert not wrong
