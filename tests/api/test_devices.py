"""The device registry through the admin API, in process."""

import datetime as dt
import logging
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select, text

from dls.app import build_device_app
from dls.audit import AuditEntry
from dls.db import asyncpg_reads
from dls.db.engine import is_sqlite
from dls.db.types import utcnow
from dls.devices.effective import load_context
from dls.devices.models import Device, RefusalReason, UnclaimedDevice
from dls.firmware.engine import RolloutStatus
from dls.firmware.models import FirmwareTarget, Rollout, TargetScope
from dls.provisioning import impact
from dls.provisioning.files import handler as handler_module
from dls.services import Services
from tests.api.world import World

pytestmark = pytest.mark.db

Client = TestClient[Any, Any]
HOSTILE = "S3<cr&t>\"'ü"


async def _post(client: Client, path: str, who: str, world: World, body: Any) -> Any:
    response = await client.post("/api/v1" + path, json=body, headers=world.auth(who))
    return response.status, await response.json()


async def _yealink(client: Client, world: World, tenant: str, mac: str, **extra: Any) -> Any:
    """A T46U registered in ``tenant`` by its admin (``extra``: a user_id, ...)."""
    status, device = await _post(
        client,
        f"/tenants/{world.tid(tenant)}/devices",
        f"{tenant}_admin",
        world,
        {"mac": mac, "vendor": "yealink", "model": "T46U", **extra},
    )
    assert status == 201, device
    return device


async def _import(client: Client, world: World, csv: str) -> Any:
    """A CSV import into the opted-in customer by its admin: (status, answer)."""
    path = f"/tenants/{world.tid('opted_in')}/devices/import"
    return await _post(client, path, "opted_in_admin", world, {"csv": csv})


async def test_register_assign_send_and_retire(client: Client, world: World) -> None:
    tenant = world.tid("opted_in")
    user_id = world.users["opted_in_user"].id
    status, device = await _post(
        client,
        f"/tenants/{tenant}/devices",
        "opted_in_admin",
        world,
        {"mac": "00:15:65:AA:BB:CC", "vendor": "yealink", "model": "t46u", "user_id": user_id},
    )
    assert status == 201, device
    assert (device["mac"], device["model"], device["status"]) == (
        "001565aabbcc",
        "T46U",
        "assigned",
    )
    assert device["digest_password_set"] is False

    status, again = await _post(
        client,
        f"/tenants/{world.tid('unlinked')}/devices",
        "unlinked_admin",
        world,
        {"mac": "001565aabbcc", "vendor": "yealink", "model": "T46U"},
    )
    assert status == 409 and "already registered" in again["message"]

    path = f"/tenants/{tenant}/devices/{device['id']}"
    status, sent = await _post(
        client, path + "/send", "opted_in_admin", world, {"shipment_ref": "DHL 123"}
    )
    assert status == 200 and sent["status"] == "sent_to_user"

    status, credentials = await _post(
        client, path + "/digest-credentials", "opted_in_admin", world, {}
    )
    assert status == 200 and credentials["username"] == "001565aabbcc"
    assert len(credentials["password"]) >= 20
    shown = await (await client.get("/api/v1" + path, headers=world.auth("opted_in_admin"))).json()
    assert shown["digest_password_set"] is True and credentials["password"] not in str(shown)

    status, retired = await _post(client, path + "/retire", "opted_in_admin", world, None)
    assert status == 200 and retired["status"] == "retired"
    # A retired MAC can be registered again, by anyone.
    status, reused = await _post(
        client,
        f"/tenants/{world.tid('unlinked')}/devices",
        "unlinked_admin",
        world,
        {"mac": "001565aabbcc", "vendor": "yealink", "model": "T46U"},
    )
    assert status == 201 and reused["tenant_id"] == world.tid("unlinked")
    assert reused["digest_password_set"] is False


async def test_only_validated_models_and_own_users(client: Client, world: World) -> None:
    tenant = world.tid("opted_in")
    status, body = await _post(
        client,
        f"/tenants/{tenant}/devices",
        "opted_in_admin",
        world,
        {"mac": "001565aabbc1", "vendor": "yealink", "model": "T99X"},
    )
    assert status == 422 and body["details"][0]["field"] == "model"
    other_user = world.users["unlinked_user"].id
    status, body = await _post(
        client,
        f"/tenants/{tenant}/devices",
        "opted_in_admin",
        world,
        {"mac": "001565aabbc2", "vendor": "yealink", "model": "T46U", "user_id": other_user},
    )
    assert status == 422 and body["details"][0]["field"] == "user_id"
    status, body = await _post(
        client,
        f"/tenants/{tenant}/devices",
        "opted_in_admin",
        world,
        {"mac": "not-a-mac-at-all", "vendor": "yealink", "model": "T46U"},
    )
    assert status == 422


async def test_partner_registers_for_an_opted_in_customer_only(
    client: Client, world: World
) -> None:
    body = {"mac": "0004f2000001", "vendor": "poly", "model": "VVX400"}
    status, _ = await _post(
        client, f"/tenants/{world.tid('opted_in')}/devices", "alpha_partner", world, body
    )
    assert status == 201
    status, _ = await _post(
        client,
        f"/tenants/{world.tid('opted_out')}/devices",
        "alpha_partner",
        world,
        {**body, "mac": "0004f2000002"},
    )
    assert status == 404


async def test_csv_import_reports_each_row(client: Client, world: World) -> None:
    tenant = world.tid("opted_in")
    csv = (
        "mac,model,user,line\n"
        "001565000001,T46U,opted_in_user,1\n"
        "001565000002,NOPE,,\n"
        "001565000003,T46U,nobody,\n"
        "zz,T46U,,\n"
        "001565000001,T46U,,\n"
        "000b82000001,HT802,,2\n"
    )
    status, report = await _import(client, world, csv)
    assert status == 200, report
    outcomes = [(r["row"], r["outcome"]) for r in report]
    assert outcomes == [
        (2, "created"),
        (3, "error"),
        (4, "error"),
        (5, "error"),
        (6, "error"),
        (7, "created"),
    ]
    assert "already registered" in report[4]["error"]
    listed = await (
        await client.get(
            f"/api/v1/tenants/{tenant}/devices?q=001565", headers=world.auth("opted_in_admin")
        )
    ).json()
    assert [d["mac"] for d in listed["items"]] == ["001565000001"]


async def test_csv_import_reads_a_spreadsheets_file(client: Client, world: World) -> None:
    """As Excel saves "CSV UTF-8" in a German locale: a byte-order mark, semicolons,
    CRLF, the header in its own order."""
    tenant = world.tid("opted_in")
    csv = (
        "\ufeffModel;MAC;User;Line\r\n"
        "SIP-T46U;00:15:65:00:10:01;opted_in_user;2\r\n"
        "VVX 450;00:04:F2:00:10:02;;\r\n"
    )
    status, report = await _import(client, world, csv)
    assert status == 200, report
    assert [(r["row"], r["mac"], r["outcome"]) for r in report] == [
        (2, "001565001001", "created"),
        (3, "0004f2001002", "created"),
    ]
    listed = await (
        await client.get(f"/api/v1/tenants/{tenant}/devices", headers=world.auth("opted_in_admin"))
    ).json()
    models = {d["mac"]: (d["vendor"], d["model"]) for d in listed["items"]}
    assert models == {"001565001001": ("yealink", "T46U"), "0004f2001002": ("poly", "VVX450")}
    status, refused = await _import(client, world, "mac;modell\n001565001002;T46U\n")
    assert status == 422, refused
    assert refused["details"][0]["field"] == "csv"
    assert "unknown column 'modell'" in refused["message"]


async def test_outdated_devices_are_those_whose_last_fetch_is_not_current(
    client: Client, world: World, services: Services
) -> None:
    """Compared by the database a page at a time: full pages, and the revision it names
    is the one the device path computes (``load_context``)."""
    tenant = world.tid("opted_in")
    devices = [await _yealink(client, world, "opted_in", f"0015650020{i:02x}") for i in range(4)]
    ids = [device["id"] for device in devices]
    async with services.sessions() as session, session.begin():
        for device_id in ids[:3]:  # fetched their current revision; the fourth never did
            context = await load_context(session, device_id=device_id)
            assert context is not None
            context.device.last_revision = context.revision
    admin = world.auth("opted_in_admin")
    # A device-level change makes the second one outdated again.
    put = await client.put(
        f"/api/v1/tenants/{tenant}/devices/{ids[1]}/settings",
        json={"settings": {"language": "fr"}},
        headers=admin,
    )
    assert put.status == 200, await put.text()

    async def outdated(after: str | None = None) -> Any:
        query = "?limit=1" + (f"&after={after}" if after else "")
        response = await client.get(
            f"/api/v1/tenants/{tenant}/outdated-devices{query}", headers=admin
        )
        assert response.status == 200, await response.text()
        return await response.json()

    first = await outdated()
    second = await outdated(first["next"])
    assert second["next"] is None
    found = [*first["items"], *second["items"]]
    assert [item["device"]["id"] for item in found] == [ids[1], ids[3]]
    assert found[1]["last_revision"] is None
    async with services.sessions() as session:
        for item in found:
            context = await load_context(session, device_id=item["device"]["id"])
            assert context is not None
            assert item["current_revision"] == context.revision != item["last_revision"]


async def test_devices_refused_since_their_last_fetch_can_be_listed(
    client: Client, world: World, services: Services
) -> None:
    """The phones that cannot get in now: refused, and not fetched since."""
    tenant = world.tid("opted_in")
    ids = [
        (await _yealink(client, world, "opted_in", f"0015650030{i:02x}"))["id"] for i in range(4)
    ]
    now = utcnow()
    earlier, later = now - dt.timedelta(minutes=5), now
    seen_and_refused = {  # id: (last_seen, last_refused_at)
        ids[0]: (None, later),  # refused, never fetched
        ids[1]: (earlier, later),  # fetched, then refused
        ids[2]: (later, earlier),  # refused, then fetched: in again
        # ids[3]: never refused
    }
    async with services.sessions() as session, session.begin():
        for device_id, (seen, refused) in seen_and_refused.items():
            device = await session.get(Device, device_id)
            assert device is not None
            device.last_seen, device.last_refused_at = seen, refused
            device.last_refused_reason = RefusalReason.WRONG_PASSWORD
            device.last_refused_address = "192.0.2.44"
    admin = world.auth("opted_in_admin")

    async def listed(refused: str) -> list[int]:
        path = f"/api/v1/tenants/{tenant}/devices?refused={refused}&sort=id"
        response = await client.get(path, headers=admin)
        assert response.status == 200, await response.text()
        return [item["id"] for item in (await response.json())["items"] if item["id"] in ids]

    assert await listed("true") == ids[:2]
    assert await listed("false") == ids[2:]
    response = await client.get(f"/api/v1/tenants/{tenant}/devices/{ids[1]}", headers=admin)
    assert (await response.json())["last_refusal"] == {
        "at": later.isoformat().replace("+00:00", "Z"),
        "reason": "wrong_password",
        "address": "192.0.2.44",
    }


async def test_settings_levels_and_effective_config(client: Client, world: World) -> None:
    tenant = world.tid("opted_in")
    user = world.users["opted_in_user"]
    _, device = await _post(
        client,
        f"/tenants/{tenant}/devices",
        "opted_in_admin",
        world,
        {"mac": "001565aabb01", "vendor": "yealink", "model": "T46U", "user_id": user.id},
    )
    admin = world.auth("opted_in_admin")
    put = await client.put(
        f"/api/v1/tenants/{tenant}/settings",
        headers=admin,
        json={
            "settings": {
                "line_defaults": {"registrar": "sip.example.net"},
                "time": {"time_zone": "Europe/Berlin"},
            }
        },
    )
    assert put.status == 200, await put.text()
    put = await client.put(
        f"/api/v1/tenants/{tenant}/users/{user.id}/settings",
        headers=admin,
        json={
            "settings": {
                "lines": {"1": {"sip_user": "201", "display_name": "Zoë <&>", "password": HOSTILE}}
            }
        },
    )
    assert put.status == 200, await put.text()
    shown = await put.json()
    assert shown["settings"]["lines"]["1"]["password"] == "********"

    response = await client.get(
        f"/api/v1/tenants/{tenant}/devices/{device['id']}/effective-config", headers=admin
    )
    effective = await response.json()
    assert response.status == 200, effective
    rows = {row["path"]: row for row in effective["values"]}
    assert rows["lines.1.registrar"]["level"] == "tenant"
    assert rows["lines.1.sip_user"]["level"] == "user"
    assert rows["lines.1.password"]["value"] == "********"
    assert HOSTILE not in str(effective)
    files = {f["file"]: f["content"] for f in effective["files"]}
    assert any("201" in content for content in files.values())

    bad = await client.put(
        f"/api/v1/tenants/{tenant}/settings",
        headers=admin,
        json={
            "settings": {"vlan": {"id": 5000}, "colour": "red", "time": {"time_zone": "Mars/Base"}}
        },
    )
    assert bad.status == 422
    details = {d["field"]: d["message"] for d in (await bad.json())["details"]}
    assert details.keys() == {"settings.vlan.id", "settings.colour", "settings.time.time_zone"}
    # A validator's own words, as the settings file and profiles give them: no prefix.
    assert details["settings.time.time_zone"] == "unknown IANA time zone 'Mars/Base'"
    assert details["settings.colour"] == "unknown field"


async def test_claiming_an_unclaimed_device(
    client: Client, world: World, services: Services
) -> None:
    async with services.sessions() as session, session.begin():
        session.add(
            UnclaimedDevice(
                mac="000b82123456",
                vendor="grandstream",
                model="HT802",
                address="192.0.2.7",
                first_seen=utcnow(),
                last_seen=utcnow(),
            )
        )
    listed = await (await client.get("/api/v1/unclaimed-devices", headers=world.auth("op"))).json()
    assert [u["mac"] for u in listed["items"]] == ["000b82123456"]
    forbidden = await client.get("/api/v1/unclaimed-devices", headers=world.auth("opted_in_admin"))
    assert forbidden.status == 403
    status, device = await _post(
        client,
        f"/tenants/{world.tid('opted_in')}/devices/claim",
        "opted_in_admin",
        world,
        {"mac": "00-0B-82-12-34-56"},
    )
    assert status == 201 and device["model"] == "HT802" and device["last_address"] == "192.0.2.7"
    status, _ = await _post(
        client,
        f"/tenants/{world.tid('opted_in')}/devices/claim",
        "opted_in_admin",
        world,
        {"mac": "000b82123456"},
    )
    assert status == 404


@pytest.mark.parametrize("key", ["²", "٣", "2147483648", "9" * 30, "0", "-1", "1e3"])
async def test_ids_no_row_can_have_are_404_not_errors(
    client: Client, world: World, key: str
) -> None:
    # Unicode digits pass str.isdigit(); numbers past the id column's range overflow the
    # database driver: none of them names a row, so each is the same 404 as a missing id.
    tenant = world.tid("opted_in")
    auth = world.auth("opted_in_admin")
    for path in (
        f"/tenants/{tenant}/devices/{key}",
        f"/tenants/{tenant}/users/{key}",
        f"/tenants/{tenant}/groups/{key}/settings",
        f"/tenants/{tenant}/devices/{key}/settings",
        f"/tenants/{tenant}/firmware/rollouts/{key}",
    ):
        response = await client.get("/api/v1" + path, headers=auth)
        assert response.status == 404, (path, response.status, await response.text())
    for path in (f"/me/tokens/{key}", f"/tenants/{tenant}/dpas/{key}/withdraw"):
        method = client.delete if "tokens" in path else client.post
        response = await method("/api/v1" + path, headers=auth)
        assert response.status == 404, (path, response.status, await response.text())


async def test_a_client_certificate_is_shown_once_replaced_and_revoked(
    client: Client, world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    device = await _yealink(client, world, "opted_in", "001565aabbd0")
    assert device["client_certificate_sha256"] is None
    path = f"/tenants/{tenant}/devices/{device['id']}"
    certificates = path + "/client-certificate"

    status, first = await _post(client, certificates, "opted_in_admin", world, None)
    assert status == 201, first
    certificate = x509.load_pem_x509_certificate(first["certificate_pem"].encode())
    key = serialization.load_pem_private_key(first["private_key_pem"].encode(), None)
    assert certificate.public_key() == key.public_key()
    assert certificate.subject.rfc4514_string() == "2.5.4.5=001565aabbd0,CN=001565aabbd0"
    assert certificate.issuer == x509.load_pem_x509_certificate(first["ca_pem"].encode()).subject
    assert first["sha256"] == certificate.fingerprint(hashes.SHA256()).hex()
    shown = await (await client.get("/api/v1" + path, headers=world.auth("opted_in_admin"))).json()
    assert shown["client_certificate_sha256"] == first["sha256"]
    assert "PRIVATE KEY" not in str(shown)

    status, second = await _post(client, certificates, "opted_in_admin", world, None)
    assert status == 201 and second["sha256"] != first["sha256"]
    revoked = await client.delete("/api/v1" + certificates, headers=world.auth("opted_in_admin"))
    assert revoked.status == 204
    shown = await (await client.get("/api/v1" + path, headers=world.auth("opted_in_admin"))).json()
    assert shown["client_certificate_sha256"] is None

    async with services.sessions() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_id == str(device["id"]))
                .where(AuditEntry.action.like("device.client_certificate.%"))
                .order_by(AuditEntry.id)
            )
        )
    assert [(e.action, e.changes["client_certificate"]) for e in entries] == [
        ("device.client_certificate.issue", {"old": None, "new": first["sha256"]}),
        ("device.client_certificate.issue", {"old": first["sha256"], "new": second["sha256"]}),
        ("device.client_certificate.revoke", {"old": second["sha256"], "new": None}),
    ]

    # A retired device gets none; registered again, it starts without the old one.
    status, _ = await _post(client, certificates, "opted_in_admin", world, None)
    await _post(client, path + "/retire", "opted_in_admin", world, None)
    status, refused = await _post(client, certificates, "opted_in_admin", world, None)
    assert status == 422 and refused["details"][0]["field"] == "status"
    again = await _yealink(client, world, "unlinked", "001565aabbd0")
    assert again["client_certificate_sha256"] is None


async def test_an_unknown_mac_costs_the_device_path_the_read_a_registered_one_does(
    client: Client, world: World, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without credentials both get the same challenge, and for the unknown MAC the
    facts query reads the last registered device found instead: an index miss alone
    answered ~20-35 us sooner, enough to tell registered MACs apart by timing
    (bench/auth_timing.py)."""
    device = await _yealink(client, world, "opted_in", "001565aabbe0")
    read: list[tuple[str, int, bool]] = []
    real = handler_module.device_facts

    async def counted(reader: Any, mac: str, decoy: int = 0) -> Any:
        facts = await real(reader, mac, decoy)
        read.append((mac, decoy, facts is not None))
        return facts

    monkeypatch.setattr(handler_module, "device_facts", counted)
    async with TestClient(TestServer(build_device_app(services))) as device_path:

        async def fetch(mac: str) -> tuple[int, str]:
            agent = f"Yealink SIP-T46U 108.86.0.90 {mac}"
            response = await device_path.get(f"/prov/{mac}.cfg", headers={"User-Agent": agent})
            return response.status, response.headers.get("WWW-Authenticate", "")[:15]

        first_unknown = await fetch("001565aabbe1")  # no device found yet: nothing to read
        known = await fetch("001565aabbe0")
        unknown = await fetch("001565aabbe1")
    assert first_unknown == known == unknown == (401, 'Digest realm="d')
    assert read == [
        ("001565aabbe1", 0, False),
        ("001565aabbe0", 0, True),
        ("001565aabbe1", device["id"], False),
    ]


async def test_a_poll_while_a_lock_holds_the_devices_table_is_told_to_come_back(
    client: Client, world: World, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a migration's lock on the device table makes polls answer 503 with
    Retry-After once their read gives up, not hang; the next poll after it is served."""
    if is_sqlite(services.engine):
        pytest.skip("PostgreSQL only")
    monkeypatch.setattr(asyncpg_reads, "READ_TIMEOUT_S", 0.5)
    await _yealink(client, world, "opted_in", "001565aabbf0")
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.90 001565aabbf0"}
    async with TestClient(TestServer(build_device_app(services))) as device_path:
        async with services.engine.connect() as locker:
            await locker.execute(text("LOCK TABLE devices IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            refused = await device_path.get("/prov/001565aabbf0.cfg", headers=agent)
            assert refused.status == 503 and refused.headers["Retry-After"]
            assert time.monotonic() - started < 5
            await locker.rollback()
        served = await device_path.get("/prov/001565aabbf0.cfg", headers=agent)
        assert served.status == 401  # the challenge: the device path works again


async def test_a_head_request_is_answered_but_not_recorded_as_a_fetch(
    client: Client, world: World, services: Services
) -> None:
    """A HEAD gets the GET's status and ETag without the body, and the ledger does not
    count it: the device has not taken the file (as for firmware downloads)."""
    tenant = world.tid("opted_in")
    await _yealink(client, world, "opted_in", "001565aabbf1")
    response = await client.patch(
        f"/api/v1/tenants/{tenant}",
        json={"legacy_mac_only": True},
        headers=world.auth("opted_in_admin"),
    )
    assert response.status == 200, await response.text()
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.90 001565aabbf1"}
    recorded: list[str] = []
    services.ledger.fetched = lambda fetch: recorded.append(fetch.file)  # type: ignore[method-assign]
    async with TestClient(TestServer(build_device_app(services))) as device_path:
        head = await device_path.head("/prov/001565aabbf1.cfg", headers=agent)
        assert head.status == 200 and head.headers["ETag"]
        assert recorded == []
        got = await device_path.get("/prov/001565aabbf1.cfg", headers=agent)
        assert got.status == 200 and got.headers["ETag"] == head.headers["ETag"]
        assert recorded == ["001565aabbf1.cfg"]


async def test_a_configuration_that_cannot_render_is_logged_once_per_revision(
    client: Client,
    world: World,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A line without a registrar at any level fails to render: every poll of that
    revision gets the 404, but the settings are read and the failure logged once, not
    per poll; the admin's fix is a new revision, rendered at the next poll."""
    tenant = world.tid("opted_in")
    user = world.users["opted_in_user"]
    admin = world.auth("opted_in_admin")
    device = await _yealink(client, world, "opted_in", "001565aabbf2", user_id=user.id)
    legacy = {"legacy_mac_only": True}
    assert (
        await client.patch(f"/api/v1/tenants/{tenant}", json=legacy, headers=admin)
    ).status == 200
    put = await client.put(
        f"/api/v1/tenants/{tenant}/users/{user.id}/settings",
        headers=admin,
        json={"settings": {"lines": {"1": {"sip_user": "202", "password": "pw"}}}, "force": True},
    )
    assert put.status == 200, await put.text()
    reads: list[int] = []
    real = handler_module.settings_sources

    async def counted(reader: Any, device_id: int) -> Any:
        reads.append(device_id)
        return await real(reader, device_id)

    monkeypatch.setattr(handler_module, "settings_sources", counted)
    caplog.set_level(logging.WARNING, logger=handler_module.log.name)
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.90 001565aabbf2"}
    async with TestClient(TestServer(build_device_app(services))) as device_path:

        async def fetch() -> int:
            return (await device_path.get("/prov/001565aabbf2.cfg", headers=agent)).status

        assert [await fetch() for _ in range(3)] == [404, 404, 404]
        assert reads == [device["id"]]
        assert ["cannot render" in r.getMessage() for r in caplog.records] == [True]
        put = await client.put(
            f"/api/v1/tenants/{tenant}/settings",
            headers=admin,
            json={"settings": {"line_defaults": {"registrar": "sip.example.net"}}},
        )
        assert put.status == 200, await put.text()
        assert await fetch() == 200
        assert reads == [device["id"]] * 2


async def test_a_settings_change_based_on_an_old_revision_is_refused(
    client: Client, world: World
) -> None:
    """Two admins (a partner's and the customer's, say) edit the tenant's settings from
    the same read: the second PUT that names the revision it read is refused, unchanged."""
    tenant = world.tid("opted_in")
    admin = world.auth("opted_in_admin")
    path = f"/api/v1/tenants/{tenant}/settings"

    async def put(body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.put(path, json=body, headers=admin)
        return response.status, await response.json()

    assert (await put({"settings": {"language": "de"}, "revision": 1}))[0] == 409  # none yet
    status, first = await put({"settings": {"language": "de"}, "revision": 0})
    assert (status, first["revision"]) == (200, 1)
    status, second = await put({"settings": {"language": "fr"}, "revision": 1})
    assert (status, second["revision"]) == (200, 2)
    status, refused = await put({"settings": {"language": "it"}, "revision": 1})
    assert (status, refused["error"]) == (409, "conflict")
    assert "since revision 1 (now 2)" in refused["message"]
    stored = await (await client.get(path, headers=admin)).json()
    assert (stored["settings"], stored["revision"]) == ({"language": "fr"}, 2)
    # Without a revision a PUT replaces whatever is there, as before.
    assert (await put({"settings": {"language": "it"}}))[0] == 200


async def test_a_settings_change_that_would_leave_devices_unconfigured_is_refused(
    client: Client, world: World, services: Services
) -> None:
    """The tenant's document sent back without the registrar (meant to change one key)
    would leave its phone without a configuration: refused, naming the phone, nothing
    stored or audited; stored when the admin insists. A phone that is broken already does
    not block the next change, and a device with nothing to lose is not counted."""
    tenant = world.tid("opted_in")
    user = world.users["opted_in_user"]
    admin = world.auth("opted_in_admin")
    path = f"/api/v1/tenants/{tenant}/settings"
    working = {"line_defaults": {"registrar": "sip.example.net"}, "language": "de"}

    async def put(url: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.put(url, json=body, headers=admin)
        return response.status, await response.json()

    assert (await put(path, {"settings": working}))[0] == 200
    line = {"lines": {"1": {"sip_user": "201", "password": "pw"}}}
    assert (await put(f"/api/v1/tenants/{tenant}/users/{user.id}/settings", {"settings": line}))[
        0
    ] == 200
    phone = await _yealink(client, world, "opted_in", "001565aabbe1", user_id=user.id)
    await _yealink(client, world, "opted_in", "001565aabbe2")  # no user, no line

    status, refused = await put(path, {"settings": {"language": "fr"}})
    assert (status, refused["error"]) == (422, "breaks_devices"), refused
    assert refused["details"] == [
        {
            "device_id": phone["id"],
            "mac": "001565aabbe1",
            "problem": "lines.1.registrar: Field required",
        }
    ]
    assert "1 of the 2 devices checked" in refused["message"]
    assert '"force": true' in refused["message"]
    stored = await (await client.get(path, headers=admin)).json()
    assert (stored["settings"], stored["revision"]) == (working, 1)

    status, changed = await put(path, {"settings": {**working, "language": "fr"}})
    assert (status, changed["revision"]) == (200, 2)
    status, forced = await put(path, {"settings": {"language": "it"}, "force": True})
    assert (status, forced["settings"], forced["revision"]) == (200, {"language": "it"}, 3)
    effective = await (
        await client.get(
            f"/api/v1/tenants/{tenant}/devices/{phone['id']}/effective-config", headers=admin
        )
    ).json()
    assert effective["problems"] == ["lines.1.registrar: Field required"]
    # Broken already: a change that breaks nothing more is stored without insisting.
    assert (await put(path, {"settings": {"language": "es"}}))[0] == 200
    async with services.sessions() as session:
        audited = list(
            await session.scalars(
                select(AuditEntry.changes["revision"].as_integer())
                .where(AuditEntry.action == "settings.put")
                .where(AuditEntry.object_id == tenant)
                .order_by(AuditEntry.id)
            )
        )
    assert audited == [1, 2, 3, 4]


async def test_a_level_with_many_devices_is_checked_on_a_sample(
    client: Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(impact, "CHECK_LIMIT", 2)
    tenant = world.tid("opted_in")
    user = world.users["opted_in_user"]
    admin = world.auth("opted_in_admin")
    for mac in ("001565aabbd1", "001565aabbd2", "001565aabbd3"):
        await _yealink(client, world, "opted_in", mac, user_id=user.id)
    response = await client.put(
        f"/api/v1/tenants/{tenant}/users/{user.id}/settings",
        json={"settings": {"lines": {"1": {"sip_user": "201"}}}},
        headers=admin,
    )
    refused = await response.json()
    assert (response.status, refused["error"]) == (422, "breaks_devices")
    assert len(refused["details"]) == 2
    assert "2 of the 2 devices checked (a sample of 2 of 3)" in refused["message"]


async def test_moving_a_phone_where_it_would_get_no_configuration_is_refused(
    client: Client, world: World
) -> None:
    """A group whose document clears the registrar the tenant sets: a working phone moved
    into it would get no configuration, so the move is refused unless the admin insists."""
    tenant = world.tid("opted_in")
    user = world.users["opted_in_user"]
    admin = world.auth("opted_in_admin")

    async def call(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await client.request(method, "/api/v1" + path, json=body, headers=admin)
        return response.status, await response.json()

    registrar = {"line_defaults": {"registrar": "sip.example.net"}}
    assert (await call("PUT", f"/tenants/{tenant}/settings", {"settings": registrar}))[0] == 200
    line = {"settings": {"lines": {"1": {"sip_user": "201", "password": "pw"}}}}
    assert (await call("PUT", f"/tenants/{tenant}/users/{user.id}/settings", line))[0] == 200
    status, group = await call("POST", f"/tenants/{tenant}/groups", {"name": "lobby"})
    assert status == 201
    cleared = {"settings": {"line_defaults": {"registrar": None}}}
    path = f"/tenants/{tenant}/groups/{group['id']}/settings"
    assert (await call("PUT", path, cleared))[0] == 200  # no device in it yet
    phone = await _yealink(client, world, "opted_in", "001565aabbc1", user_id=user.id)

    device = f"/tenants/{tenant}/devices/{phone['id']}"
    status, refused = await call("PATCH", device, {"group_id": group["id"]})
    assert (status, refused["error"]) == (422, "breaks_devices"), refused
    assert refused["details"][0]["problem"] == "lines.1.registrar: Field required"
    status, unchanged = await call("GET", device, {})
    assert (status, unchanged["group_id"]) == (200, None)
    assert (await call("PATCH", device, {"user_line": 2}))[0] == 200  # still configured
    status, moved = await call("PATCH", device, {"group_id": group["id"], "force": True})
    assert (status, moved["group_id"]) == (200, group["id"])


async def test_a_group_is_renamed_once_per_name(
    client: Client, world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    admin = world.auth("opted_in_admin")
    groups = f"/api/v1/tenants/{tenant}/groups"
    lobby = await (await client.post(groups, json={"name": "Lobby"}, headers=admin)).json()
    await client.post(groups, json={"name": "Office"}, headers=admin)

    async def rename(name: str) -> tuple[int, Any]:
        path = f"{groups}/{lobby['id']}"
        response = await client.patch(path, json={"name": name}, headers=admin)
        return response.status, await response.json()

    status, renamed = await rename(" Reception ")
    assert (status, renamed["name"], renamed["id"]) == (200, "Reception", lobby["id"])
    assert (await rename("Reception"))[0] == 200  # unchanged: nothing to record
    status, refused = await rename("Office")
    assert (status, refused["error"]) == (409, "conflict")
    listed = await (await client.get(groups, headers=admin)).json()
    assert sorted(group["name"] for group in listed) == ["Office", "Reception"]
    async with services.sessions() as session:
        audited = list(
            await session.scalars(
                select(AuditEntry.changes)
                .where(AuditEntry.action == "group.update")
                .where(AuditEntry.object_id == str(lobby["id"]))
            )
        )
    assert audited == [{"name": {"old": "Lobby", "new": "Reception"}}]


async def test_a_group_is_deleted_only_when_empty_and_takes_its_settings_along(
    client: Client, world: World, services: Services
) -> None:
    tenant = world.tid("opted_in")
    admin = world.auth("opted_in_admin")
    groups = f"/api/v1/tenants/{tenant}/groups"

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await client.request(method, path, json=body, headers=admin)
        return response.status, await response.json() if response.status != 204 else None

    _, lobby = await call("POST", groups, {"name": "Lobby"})
    group = f"{groups}/{lobby['id']}"
    secret = {"settings": {"line_defaults": {"registrar": "lobby.example.net"}}}
    assert (await call("PUT", f"{group}/settings", secret))[0] == 200
    async with services.sessions() as session, session.begin():
        session.add(
            FirmwareTarget(
                scope=TargetScope.GROUP,
                scope_key=str(lobby["id"]),
                vendor="yealink",
                model="T46U",
                model_key="t46u",
                version="108.86.0.90",
                version_key="108.86.0.90",
            )
        )
    phone = await _yealink(client, world, "opted_in", "001565aabbd1", group_id=lobby["id"])
    old = await _yealink(client, world, "opted_in", "001565aabbd2", group_id=lobby["id"])
    retire = f"/api/v1/tenants/{tenant}/devices/{old['id']}/retire"
    assert (await call("POST", retire, {}))[0] == 200  # cannot be moved; does not hold it

    status, refused = await call("DELETE", group)
    assert (status, refused["error"]) == (409, "conflict")
    assert "1 device(s)" in refused["message"]
    device = f"/api/v1/tenants/{tenant}/devices/{phone['id']}"
    assert (await call("PATCH", device, {"group_id": None, "force": True}))[0] == 200
    async with services.sessions() as session, session.begin():
        rollout = Rollout(
            name="lobby first",
            tenant_id=tenant,
            group_id=lobby["id"],
            targets=[],
            status=RolloutStatus.COMPLETED,
            failure_threshold_percent=10,
            wave_timeout_seconds=600,
            lock_version=1,
        )
        session.add(rollout)
    assert (await call("DELETE", group))[0] == 409  # the rollout's record names it
    async with services.sessions() as session, session.begin():
        await session.delete(await session.get(Rollout, rollout.id))

    assert (await call("DELETE", group)) == (204, None)
    assert (await call("GET", f"{group}/settings"))[0] == 404
    assert (await call("DELETE", group))[0] == 404
    assert [g["name"] for g in (await call("GET", groups))[1]] == []
    async with services.sessions() as session:
        targets = await session.scalar(select(func.count()).select_from(FirmwareTarget))
        audited = await session.scalar(
            select(AuditEntry.changes).where(AuditEntry.action == "group.delete")
        )
    assert targets == 0
    assert audited == {
        "name": "Lobby",
        "firmware_targets": ["yealink T46U 108.86.0.90"],
        "settings_cleared": True,
        "retired_devices": [old["id"]],
    }
    status, retired = await call("GET", f"/api/v1/tenants/{tenant}/devices/{old['id']}")
    assert (status, retired["status"], retired["group_id"]) == (200, "retired", None)
    # A group made next (on SQLite it may take the same id) starts with nothing of the
    # deleted one's, and a revision of its own.
    _, hall = await call("POST", groups, {"name": "Hall"})
    status, settings = await call("GET", f"{groups}/{hall['id']}/settings")
    assert (status, settings["settings"]) == (200, {})
    if hall["id"] == lobby["id"]:
        assert settings["revision"] == 2  # the emptied document: not 1 again
