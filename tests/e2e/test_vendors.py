"""Every file-provisioned vendor family against the real server over TLS.

An admin registers a device, gives its user a line and the device Digest credentials; a
simulated device of the vendor boots, gets the line in its own keys, gets 304 on the next
boot and the admin's next change on the one after. Then the failures a user would notice:
unknown devices, wrong passwords, another tenant's device, and what the admin API shows.

One server for the module keeps the run short; every test makes its own tenant and MACs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from dls.config import load_settings
from dls.pki import ensure_pki, issue_device_certificate
from dls.provisioning.files.profiles import load_profiles
from dls.provisioning.files.vocabulary import FileRole, FileScope
from dls.provisioning.ledger import NEW_UNCLAIMED_PER_ADDRESS_PER_MINUTE
from dls.sim.phones import Connection, SimulatedPhone, load_user_agents
from tests.conftest import empty_database
from tests.e2e.admin import AdminClient, eventually
from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.asyncio(loop_scope="module")]

PROFILES = load_profiles()
REGISTRAR = "sip.example.net"
DISPLAY_NAME = "Zoë <Front> & \"Desk\" 'ß' 東京"
CHANGED_NAME = "Ånna & <Bob> \"Reception\" 'Ω'"
NOT_FOUND = b"not found\n"
CHALLENGE = b"authentication required\n"


@dataclass(frozen=True)
class Case:
    """A vendor family: the model it is tested with and where line 1 lands in its keys."""

    vendor: str
    model: str
    firmware: str
    sip_user: str
    password: str
    display_name: str
    registrar: str
    registrar_value: str  # "{host}" or "{host}:{port}"

    @property
    def id(self) -> str:
        return f"{self.vendor}-{self.model}"

    def line_keys(self) -> set[str]:
        return {self.sip_user, self.password, self.display_name, self.registrar}


# Line 1's vendor keys per reference/vendor-provisioning.md, written out here rather than
# taken from the profiles, so a mapping mistake shows up as a failure.
CASES = [
    Case(
        "yealink",
        "T46U",
        "108.86.0.90",
        "account.1.user_name",
        "account.1.password",
        "account.1.display_name",
        "account.1.sip_server.1.address",
        "{host}",
    ),
    Case(
        "poly",
        "VVX400",
        "4.1.4.7430",
        "reg.1.address",
        "reg.1.auth.password",
        "reg.1.displayName",
        "reg.1.server.1.address",
        "{host}",
    ),
    Case(
        "snom",
        "D785",
        "10.1.33.33",
        "user_name[1]",
        "user_pass[1]",
        "user_realname[1]",
        "user_host[1]",
        "{host}:{port}",
    ),
    Case("grandstream", "GXP2135", "1.0.7.97", "P35", "P34", "P3", "P47", "{host}:{port}"),
    Case("grandstream", "HT802", "1.0.17.5", "P35", "P34", "P3", "P47", "{host}:{port}"),
    Case(
        "cisco",
        "SPA122",
        "1.3.5",
        "User_ID_1_",
        "Password_1_",
        "Display_Name_1_",
        "Proxy_1_",
        "{host}:{port}",
    ),
    Case(
        "gigaset",
        "N870 IP PRO",
        "83.V2.11.0",
        "SipAccount.00001.UserName",
        "SipAccount.00001.AuthPassword",
        "SipAccount.00001.DisplayName",
        "SipProvider.1.Domain",
        "{host}",
    ),
    Case(
        "fanvil",
        "X5U",
        "2.12.16.17",
        "sip.line[1].PhoneNumber",
        "sip.line[1].RegisterPswd",
        "sip.line[1].DisplayName",
        "sip.line[1].RegisterAddr",
        "{host}",
    ),
]
BY_VENDOR = {case.vendor: case for case in CASES}
_MACS = itertools.count(1)
_UNKNOWN_MACS = itertools.count(1)


def new_mac() -> str:
    """A MAC no other test uses (locally administered)."""
    return f"02d150{next(_MACS):06x}"


def unknown_mac() -> str:
    """A MAC that is never registered; the server records each one as unclaimed."""
    number = next(_UNKNOWN_MACS)
    # The ledger records at most this many new unknown MACs per address and minute; more
    # would silently leave later ones out of the unclaimed list.
    assert number <= NEW_UNCLAIMED_PER_ADDRESS_PER_MINUTE
    return f"02d15f{number:06x}"


def secret_token(case: Case) -> str:
    """Part of the line password, unique per case and the same in every escaping."""
    return f"{case.vendor}{case.model.replace(' ', '')}Secret"


def line_password(case: Case) -> str:
    return f"Pw<&>\"'ü-{secret_token(case)}"


def line(case: Case, sip_user: str) -> dict[str, Any]:
    return {
        "sip_user": sip_user,
        "password": line_password(case),
        "display_name": DISPLAY_NAME,
        "registrar": REGISTRAR,
    }


def expected_line(case: Case, sip_user: str) -> dict[str, str]:
    return {
        case.sip_user: sip_user,
        case.password: line_password(case),
        case.display_name: DISPLAY_NAME,
        case.registrar: case.registrar_value.format(host=REGISTRAR, port=5060),
    }


# --- fixtures ----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("vendors")
    process = ServerProcess(root, await empty_database(root))
    await process.start()
    yield process
    await process.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(server: ServerProcess) -> AsyncIterator[AdminClient]:
    async with aiohttp.ClientSession() as session:
        yield await AdminClient.operator(server, session)


@dataclass
class Registered:
    tenant: str
    user: int
    device: dict[str, Any]
    mac: str
    sip_user: str
    password: str  # the Digest password, shown once


async def register(admin: AdminClient, case: Case, label: str) -> Registered:
    """A tenant with a user whose line 1 is set, and a device of ``case`` with Digest."""
    mac = new_mac()
    tenant = await admin.create_tenant(f"{label} {case.id} {mac}")
    user = await admin.create_user(tenant, f"{label}-{mac}@example.net")
    device = await admin.create_device(tenant, mac, case.vendor, case.model, user_id=user)
    sip_user = str(2000 + next(_MACS))
    await admin.put_settings(tenant, {"lines": {"1": line(case, sip_user)}}, "users", user)
    username, password = await admin.set_digest_credentials(tenant, device["id"])
    assert username == mac
    return Registered(tenant, user, device, mac, sip_user, password)


def phone(server: ServerProcess, case: Case, mac: str, **options: Any) -> SimulatedPhone:
    return SimulatedPhone(
        PROFILES[case.vendor],
        case.model,
        mac,
        case.firmware,
        base_url=server.url("device", "/prov/"),
        ca_file=server.ca_file,
        **options,
    )


def device_configs(sim: SimulatedPhone) -> list[str]:
    """The device's own boot and config files: the ones with its secrets."""
    return [
        name
        for name, file in sim.files.items()
        if file.scope is FileScope.DEVICE and file.role in (FileRole.BOOT, FileRole.CONFIG)
    ]


def common_files(sim: SimulatedPhone) -> list[str]:
    """The files every device of the model gets (and dls serves)."""
    return [
        name
        for name, file in sim.files.items()
        if file.scope is FileScope.COMMON and file.role not in (FileRole.UNSERVED, FileRole.UPLOAD)
    ]


def requested(sim: SimulatedPhone, names: list[str]) -> dict[str, int]:
    """The latest status of each of ``names`` the device requested."""
    statuses = sim.statuses()
    return {name: statuses[name] for name in names if name in statuses}


def assert_no_secret(sim: SimulatedPhone, case: Case, *secrets: str) -> None:
    """Nothing the device got, other than its own authenticated files, holds a secret:
    not common files, not error answers."""
    own = requested(sim, device_configs(sim))
    for name, status in sim.statuses().items():
        if own.get(name) == 200:
            continue
        body = sim.body(name) or b""
        for secret in (secret_token(case), *secrets):
            assert secret.encode() not in body, name
        parsed = sim.parsed(name)
        if parsed is not None and status in (200, 304):
            assert not case.line_keys() & parsed.settings.keys(), name


# --- the happy path, per vendor ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_a_device_provisions_and_follows_the_admins_changes(
    server: ServerProcess, admin: AdminClient, case: Case
) -> None:
    setup = await register(admin, case, "flow")
    async with phone(server, case, setup.mac, digest_password=setup.password) as sim:
        settings = await sim.provision()
        assert sim.problems == []
        assert requested(sim, device_configs(sim)) == dict.fromkeys(device_configs(sim), 200)
        assert expected_line(case, setup.sip_user).items() <= settings.items()
        assert_no_secret(sim, case, line_password(case), setup.password)

        # The next boot: nothing changed, every file the device got before is a 304.
        answered = sim.answered
        sim.log.clear()
        assert await sim.provision() == settings
        assert {name: sim.statuses()[name] for name in answered} == dict.fromkeys(answered, 304)

        # The admin renames the line on the device itself; the next boot picks it up.
        change = {"lines": {"1": {"display_name": CHANGED_NAME}}}
        await admin.put_settings(setup.tenant, change, "devices", setup.device["id"])
        sim.log.clear()
        settings = await sim.provision()
        assert settings[case.display_name] == CHANGED_NAME
        assert settings[case.password] == line_password(case)
        assert 200 in requested(sim, device_configs(sim)).values(), sim.log
        assert set(requested(sim, common_files(sim)).values()) <= {304}, sim.log
        assert sim.problems == []

    seen = await eventually(
        lambda: admin.device(setup.tenant, setup.device["id"]),
        lambda device: device["status"] in ("provisioned", "active") and device["last_seen"],
    )
    assert seen["last_user_agent"] == sim.user_agent
    assert seen["firmware_version"] == case.firmware

    async def outdated() -> list[int]:
        page = await admin.call("GET", f"/tenants/{setup.tenant}/outdated-devices")
        return [item["device"]["id"] for item in page["items"]]

    # The device fetched the latest revision: once the ledger says so, it is not outdated.
    await eventually(outdated, lambda ids: setup.device["id"] not in ids)
    effective = await admin.effective_config(setup.tenant, setup.device["id"])
    assert effective["problems"] == []
    previews = "".join(preview["content"] for preview in effective["files"])
    assert CHANGED_NAME.split(" ")[0] in previews
    assert secret_token(case) not in previews  # secrets are masked in the preview


# --- what an unknown, wrong or foreign device gets -----------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_an_unknown_device_gets_a_challenge_then_nothing(
    server: ServerProcess, admin: AdminClient, case: Case
) -> None:
    mac = unknown_mac()
    async with phone(server, case, mac) as sim:
        await sim.provision()
    first = device_configs(sim)[0]  # requested by every vendor, known or not
    assert sim.statuses()[first] == 401
    assert sim.body(first) == CHALLENGE
    assert_no_secret(sim, case)
    async with phone(server, case, mac, digest_password="a-guess-at-the-password") as sim:
        settings = await sim.provision()
    assert [e.status for e in sim.log if e.file == first] == [401, 404]
    assert sim.body(first) == NOT_FOUND
    assert set(requested(sim, device_configs(sim)).values()) == {404}
    assert not case.line_keys() & settings.keys()
    assert_no_secret(sim, case)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_a_wrong_digest_password_gets_404(
    server: ServerProcess, admin: AdminClient, case: Case
) -> None:
    setup = await register(admin, case, "wrong")
    async with phone(server, case, setup.mac, digest_password=setup.password + "x") as sim:
        settings = await sim.provision()
    own = requested(sim, device_configs(sim))
    assert own and set(own.values()) == {404}, sim.log
    assert all(sim.body(name) == NOT_FOUND for name in own)
    assert not case.line_keys() & settings.keys()
    assert_no_secret(sim, case, line_password(case))
    # The phone learns nothing; its admin learns why.
    device = await refused(admin, setup.tenant, setup.device["id"])
    assert device["last_seen"] is None  # a refusal is not a fetch
    refusal = device["last_refusal"]
    assert (refusal["reason"], refusal["address"]) == ("wrong_password", "127.0.0.1")


async def refused(
    admin: AdminClient, tenant: str, device_id: int, since: dt.datetime | None = None
) -> dict[str, Any]:
    """The device as its admin sees it once the ledger has written a refusal (later than
    ``since``)."""

    def later(found: dict[str, Any]) -> bool:
        refusal = found["last_refusal"]
        return refusal is not None and (
            since is None or dt.datetime.fromisoformat(refusal["at"]) > since
        )

    return await eventually(lambda: admin.device(tenant, device_id), later)


async def test_a_device_without_a_digest_password_is_proven_by_no_password(
    server: ServerProcess, admin: AdminClient
) -> None:
    """Requests for such a device were checked against the hash of a password written in
    the source, for equal timing, and a match was taken as proof: a device set up for a
    client certificate, or before its credentials, gave its file to whoever read the
    source."""
    case = BY_VENDOR["yealink"]
    mac = new_mac()
    tenant = await admin.create_tenant(f"no password {case.id} {mac}")
    device = await admin.create_device(tenant, mac, case.vendor, case.model)
    await admin.put_settings(tenant, {"lines": {"1": line(case, "5002")}}, "devices", device["id"])
    source_password = "dls-dummy-password-for-equal-timing"
    async with phone(server, case, mac, digest_password=source_password) as sim:
        settings = await sim.provision()
    own = requested(sim, device_configs(sim))
    assert own and set(own.values()) == {404}, sim.log
    assert not case.line_keys() & settings.keys()
    assert_no_secret(sim, case, line_password(case))
    assert (await refused(admin, tenant, device["id"]))["last_refusal"]["reason"] == "no_password"


async def outcomes(server: ServerProcess) -> Counter[tuple[str, str]]:
    """dls_device_files_total as the operator's /metrics shows it."""
    url = server.url("admin", "/metrics")
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=server.ssl_context()) as response,
    ):
        text = await response.text()
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dls_device_files_total":
                counts[sample.labels["vendor"], sample.labels["outcome"]] += int(sample.value)
    return counts


async def test_the_operator_sees_why_devices_were_turned_away(
    server: ServerProcess, admin: AdminClient
) -> None:
    """A phone's 404 does not say why; the operator's count, per vendor, does."""
    case = CASES[0]
    setup = await register(admin, case, "counted")
    before = await outcomes(server)
    sims = {}
    async with phone(server, case, setup.mac, digest_password=setup.password) as sim:
        await sim.provision()
        await sim.provision()  # the next boot: 304s
        sims["right"] = sim
    async with phone(server, case, setup.mac, digest_password="not-the-password") as sim:
        await sim.provision()
        sims["wrong"] = sim
    async with phone(server, case, unknown_mac(), digest_password="a-guess") as sim:
        await sim.provision()
        sims["unknown"] = sim
    # A path no profile knows; a Yealink asking for another phone's file.
    other = new_mac()  # not asked for as itself: detection refuses the request first
    strays = [
        ("/prov/no-phone-asks-for-this.bin", {}),
        (f"/prov/{other}.cfg", {"User-Agent": f"Yealink SIP-T46U 108.86.0.90 {setup.mac}"}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers in strays:
            url = server.url("device", path)
            async with session.get(url, headers=headers, ssl=server.ssl_context()) as response:
                assert response.status == 404

    def answered(which: str, status: int) -> int:
        return sum(1 for entry in sims[which].log if entry.status == status)

    expected = Counter(
        {
            (case.vendor, "served"): sum(answered(which, 200) for which in sims),
            (case.vendor, "not_modified"): answered("right", 304),
            (case.vendor, "challenged"): sum(answered(which, 401) for which in sims),
            (case.vendor, "refused"): answered("wrong", 404),
            (case.vendor, "unknown"): answered("unknown", 404),
            ("none", "unrecognised"): 1,
            (case.vendor, "mac_mismatch"): 1,
        }
    )
    assert all(expected[key] for key in expected if key[1] != "served"), sims["wrong"].log
    assert (await outcomes(server)) - before == expected


async def test_a_digest_response_for_one_file_does_not_fetch_another(
    server: ServerProcess, admin: AdminClient
) -> None:
    """The response hashes the URI it names; that URI must be the one requested."""
    case = CASES[0]  # Yealink: <mac>.boot and <mac>.cfg are both per-device files
    setup = await register(admin, case, "replay")
    agent = f"Yealink SIP-{case.model} {case.firmware} {setup.mac}"
    boot, cfg = f"/prov/{setup.mac}.boot", f"/prov/{setup.mac}.cfg"
    async with aiohttp.ClientSession(headers={"User-Agent": agent}) as session:
        url = server.url("device", cfg)
        async with session.get(url, ssl=server.ssl_context()) as response:
            assert response.status == 401
            nonce = re.search(r'nonce="([^"]+)"', response.headers["WWW-Authenticate"])
        assert nonce is not None
        header = digest_header(setup.mac, setup.password, nonce.group(1), boot)
        for path, status in ((cfg, 404), (boot, 200)):
            async with session.get(
                server.url("device", path),
                headers={"Authorization": header},
                ssl=server.ssl_context(),
            ) as response:
                assert response.status == status, path


def digest_header(username: str, password: str, nonce: str, uri: str) -> str:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 7616 MD5

    ha1, ha2 = md5(f"{username}:dls:{password}"), md5(f"GET:{uri}")
    response = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="dls", nonce="{nonce}", uri="{uri}", '
        f'algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee", response="{response}"'
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_another_tenants_device_cannot_fetch_this_ones_files(
    server: ServerProcess, admin: AdminClient, case: Case
) -> None:
    victim = await register(admin, case, "victim")
    intruder = await register(admin, case, "intruder")
    # The intruder asks for the victim's files, naming itself in the User-Agent (where the
    # vendor sends a MAC) and answering challenges with its own valid credentials.
    agent = load_user_agents().render(case.vendor, case.model, case.firmware, intruder.mac)
    async with phone(
        server,
        case,
        victim.mac,
        user_agent=agent,
        digest_username=intruder.mac,
        digest_password=intruder.password,
    ) as sim:
        settings = await sim.provision()
    own = requested(sim, device_configs(sim))
    assert own and set(own.values()) == {404}, sim.log
    if case.vendor != "poly":  # Poly's User-Agent names no MAC, so only Digest can refuse
        # Path and User-Agent disagree: refused before any challenge.
        assert all(e.status == 404 for e in sim.log if e.file in own), sim.log
    assert not case.line_keys() & settings.keys()
    assert_no_secret(sim, case, line_password(case))


# --- what the admin sees, and other ways in ------------------------------------------------


async def test_an_unknown_device_is_listed_and_can_be_claimed(
    server: ServerProcess, admin: AdminClient
) -> None:
    case = BY_VENDOR["fanvil"]
    mac = unknown_mac()
    async with phone(server, case, mac) as sim:
        await sim.provision()
    assert sim.log == [(f"{mac}.cfg", 401)]

    async def listed() -> list[dict[str, Any]]:
        return [d for d in await admin.unclaimed("fanvil") if d["mac"] == mac]

    [found] = await eventually(listed, bool)
    assert (found["vendor"], found["model"]) == ("fanvil", "X5U")
    assert (found["firmware_version"], found["user_agent"]) == (case.firmware, sim.user_agent)

    tenant = await admin.create_tenant(f"claim {mac}")
    user = await admin.create_user(tenant, f"claim-{mac}@example.net")
    device = await admin.claim(tenant, mac.upper(), user_id=user)
    assert (device["mac"], device["model"], device["tenant_id"]) == (mac, "X5U", tenant)
    assert await listed() == []
    await admin.put_settings(tenant, {"lines": {"1": line(case, "3001")}}, "users", user)
    _, password = await admin.set_digest_credentials(tenant, device["id"])
    async with phone(server, case, mac, digest_password=password) as sim:
        settings = await sim.provision()
    assert sim.log == [(f"{mac}.cfg", 401), (f"{mac}.cfg", 200)]
    assert expected_line(case, "3001").items() <= settings.items()


async def test_a_device_certificate_replaces_digest(
    server: ServerProcess, admin: AdminClient, tmp_path: Path
) -> None:
    """A certificate dls issued through the admin API proves its device until another
    is issued or it is revoked; one from the same CA naming the MAC but not issued to the
    device (as a phone in WPI secure mode holds) proves nothing on this path."""
    case = BY_VENDOR["yealink"]
    mac = new_mac()
    tenant = await admin.create_tenant(f"certificate {mac}")
    device = await admin.create_device(tenant, mac, case.vendor, case.model)
    neighbour = await admin.create_device(tenant, new_mac(), case.vendor, case.model)
    await admin.put_settings(tenant, {"lines": {"1": line(case, "4001")}}, "devices", device["id"])

    def saved(name: str, certificate_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert.write_bytes(certificate_pem)
        key.write_bytes(key_pem)
        return cert, key

    async def issued(device_id: int, name: str) -> tuple[Path, Path]:
        answer = await admin.issue_client_certificate(tenant, device_id)
        return saved(name, answer["certificate_pem"].encode(), answer["private_key_pem"].encode())

    async def boot_file_status(certificate: tuple[Path, Path]) -> int:
        async with phone(server, case, mac, client_certificate=certificate) as sim:
            await sim.provision()
        return sim.statuses()[f"{mac}.boot"]

    own = await issued(device["id"], "own")
    async with phone(server, case, mac, client_certificate=own) as sim:
        settings = await sim.provision()
    assert sim.log == [(f"{mac}.boot", 200), ("y000000000108.cfg", 200), (f"{mac}.cfg", 200)]
    assert expected_line(case, "4001").items() <= settings.items()

    # Another phone's certificate proves nothing about this MAC: back to a challenge.
    assert await boot_file_status(await issued(neighbour["id"], "neighbour")) == 401
    # Nor does one the device CA signed for this MAC outside the admin API.
    pki = ensure_pki(load_settings(None, certs_dir=server.certs))
    unrecorded = issue_device_certificate(pki, mac)
    assert (
        await boot_file_status(saved("unrecorded", unrecorded.certificate_pem, unrecorded.key_pem))
        == 401
    )
    # Issuing a new one ends the old; revoking ends the new.
    renewed = await issued(device["id"], "renewed")
    assert await boot_file_status(own) == 401
    assert await boot_file_status(renewed) == 200
    await admin.call(
        "DELETE", f"/tenants/{tenant}/devices/{device['id']}/client-certificate", expect=204
    )
    before = dt.datetime.now(dt.UTC)
    assert await boot_file_status(renewed) == 401
    # A phone with only its certificate stops at the challenge; its admin sees why.
    refusal = (await refused(admin, tenant, device["id"], since=before))["last_refusal"]
    assert refusal["reason"] == "wrong_certificate"


async def test_a_legacy_mac_only_tenant_trusts_the_mac_alone(
    server: ServerProcess, admin: AdminClient
) -> None:
    case = BY_VENDOR["gigaset"]
    mac = new_mac()
    tenant = await admin.create_tenant(f"legacy {mac}")
    updated = await admin.update_tenant(tenant, legacy_mac_only=True)
    assert updated["warnings"]
    device = await admin.create_device(tenant, mac, case.vendor, case.model)
    await admin.put_settings(tenant, {"lines": {"1": line(case, "5001")}}, "devices", device["id"])
    async with phone(server, case, mac) as sim:
        settings = await sim.provision()
    assert sim.log == [(f"{mac}.xml", 200)]
    assert expected_line(case, "5001").items() <= settings.items()


async def test_poly_uploads_need_the_devices_credentials(
    server: ServerProcess, admin: AdminClient
) -> None:
    case = BY_VENDOR["poly"]
    setup = await register(admin, case, "upload")
    log = f"{setup.mac}-app.log"
    async with phone(server, case, setup.mac) as sim:
        assert await sim.upload(log, b"boot ok\n") == 401
    async with phone(server, case, setup.mac, digest_password=setup.password) as sim:
        assert await sim.upload(log, b"boot ok\n") == 204
        # A config file is never an upload target.
        assert await sim.upload(f"{setup.mac}-dls.cfg", b"<polycomConfig/>") == 404
    uploaded = server.root / "var" / "uploads" / setup.mac / log
    assert uploaded.read_bytes() == b"boot ok\n"


@pytest.mark.parametrize(
    ("connection", "expected"), [(Connection.PER_FETCH, None), (Connection.KEEP_ALIVE, 1)]
)
async def test_per_fetch_connections_and_keep_alive(
    server: ServerProcess, admin: AdminClient, connection: Connection, expected: int | None
) -> None:
    case = BY_VENDOR["grandstream"]
    setup = await register(admin, case, f"connection-{connection}")
    async with phone(
        server, case, setup.mac, digest_password=setup.password, connection=connection
    ) as sim:
        settings = await sim.provision()
    assert expected_line(case, setup.sip_user).items() <= settings.items()
    assert sim.connections_opened == (expected or len(sim.log))
