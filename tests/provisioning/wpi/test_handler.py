"""The WPI device path in-process: HTTP rules, sessions in the database, effects persisted.

Phones are ``dls.sim.unify.UnifyPhone``; where a test needs a message no sane phone
sends, it posts raw XML. TLS-only behaviour (the secure listener) is in tests/e2e.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from dls import audit
from dls.app import build_device_app
from dls.devices.models import Scope, UnclaimedDevice
from dls.devices.unify import JobKind, JobState, WpiDevice
from dls.provisioning.wpi import handler as handler_module
from dls.provisioning.wpi.dispatch import BACKGROUND
from dls.provisioning.wpi.handler import KEEP_CONNECTION_FOR
from dls.provisioning.wpi.limits import RETRY_AFTER_MIN
from dls.provisioning.wpi.runtime import WPI
from dls.provisioning.wpi.xml import MAX_BODY_BYTES
from dls.services import Services
from dls.sim.unify import UnifyPhone
from tests.provisioning.wpi.conftest import LINE, Fleet

pytestmark = pytest.mark.db

NS = "http://www.siemens.com/DLS"
PATH = "/DeploymentService/LoginService"
MAC = "001ae8123456"
CONTACT_URI = "http://127.0.0.1:9/contact_dls.html/ContactDLS"


def workpoint(
    reason: str,
    *items: tuple[str, str],
    nonce: str = "A" * 32,
    action: str | None = None,
    status: str | None = None,
) -> bytes:
    attributes = ""
    if action:
        attributes += f' action="{action}"'
    if status:
        attributes += f' status="{status}"'
    item_list = "".join(f'<Item name="{name}">{value}</Item>' for name, value in items)
    return (
        f'<WorkpointMessage xmlns="{NS}"><Message nonce="{nonce}">'
        f"<ReasonForContact{attributes}>{reason}</ReasonForContact>"
        f"<ItemList>{item_list}</ItemList></Message></WorkpointMessage>"
    ).encode()


def identity(mac: str = MAC) -> tuple[tuple[str, str], ...]:
    pretty = ":".join(mac[i : i + 2] for i in range(0, 12, 2)).upper()
    return (
        ("device-type", "OpenStage 40"),
        ("software-version", "V3 R5.12.0"),
        ("mac-addr", pretty),
        ("contact-me-uri", CONTACT_URI),
    )


def answer(body: bytes) -> tuple[str, str, dict[str, str]]:
    root = etree.fromstring(body)
    message = root.find(f"{{{NS}}}Message")
    assert message is not None
    items = {
        item.get("name", ""): item.text or ""
        for item in message.iterfind(f"{{{NS}}}ItemList/{{{NS}}}Item")
    }
    return message.get("nonce", ""), message.findtext(f"{{{NS}}}Action") or "", items


async def post(
    client: TestClient[Any, Any],
    body: bytes,
    cookie: str | None = None,
    content_type: str = "text/xml",
) -> Any:
    headers = {"Content-Type": content_type}
    if cookie:
        headers["Cookie"] = f"JSESSIONID={cookie}"
    return await client.post(PATH, data=body, headers=headers)


# --- HTTP ------------------------------------------------------------------------------


async def test_cheap_rejects_come_before_parsing(
    device_client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    too_big = await device_client.post(
        PATH, data=b"x" * (MAX_BODY_BYTES + 1), headers={"Content-Type": "text/xml"}
    )
    assert too_big.status == 413
    wrong_type = await post(device_client, workpoint("start-up"), content_type="text/plain")
    assert wrong_type.status == 415
    assert (await device_client.get(PATH)).status == 405
    caplog.set_level(logging.DEBUG, "dls.wpi")
    for _ in range(3):
        bad = await post(device_client, b"<WorkpointMessage><unclosed>")
        assert bad.status == 400
        assert await bad.text() == "malformed XML"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.msg]
    assert len(warnings) == 1  # then debug: a flood is not a flood of log lines


async def test_answers_have_content_length_and_echo_the_nonce(
    device_client: TestClient[Any, Any],
) -> None:
    response = await post(device_client, workpoint("start-up", *identity(), nonce="7C1E" * 8))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(await response.read())
    assert "Transfer-Encoding" not in response.headers
    nonce, action, _ = answer(await response.read())
    assert (nonce, action) == ("7C1E" * 8, "CleanUp")


async def test_missing_nonce_and_wrong_root_are_400(device_client: TestClient[Any, Any]) -> None:
    no_nonce = workpoint("start-up").replace(b' nonce="' + b"A" * 32 + b'"', b"")
    response = await post(device_client, no_nonce)
    assert (response.status, await response.text()) == (400, "Message has no nonce")
    other_root = b'<DLSMessage xmlns="http://www.siemens.com/DLS"/>'
    response = await post(device_client, other_root)
    assert (response.status, await response.text()) == (400, "root element is not WorkpointMessage")


async def test_overload_refuses_new_interactions_with_503(
    device_client: TestClient[Any, Any], fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    before = _wpi_metrics()
    opened = await post(device_client, workpoint("start-up", *identity()))
    cookie = opened.cookies["JSESSIONID"].value
    assert _wpi_metrics()["open"] == 1
    device_client.server.app[WPI].admission.max_open = 0
    refused = await post(device_client, workpoint("start-up", *identity("001ae8000001")))
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.headers.get("Connection", "keep-alive") == "keep-alive"  # its turn is near
    for _ in range(KEEP_CONNECTION_FOR * 200):  # a queue of many seconds at 100+/s
        device_client.server.app[WPI].admission.retry_after()
    later = await post(device_client, workpoint("start-up", *identity("001ae8000002")))
    assert int(later.headers["Retry-After"]) > KEEP_CONNECTION_FOR
    assert later.headers["Connection"] == "close"  # no idle connection until its turn
    # An interaction already admitted finishes; if the process is too busy even for it,
    # it is told the shortest wait and keeps its connection.
    admission = device_client.server.app[WPI].admission
    reply = workpoint("reply-to", *identity(), action="ReadAllItems", status="accepted")
    admission.max_active, max_active = 0, admission.max_active
    deferred = await post(device_client, reply, cookie)
    assert (deferred.status, deferred.headers["Retry-After"]) == (503, "5")
    assert deferred.headers.get("Connection", "keep-alive") == "keep-alive"
    admission.max_active = max_active
    continued = await post(device_client, reply, cookie)
    assert continued.status == 200
    assert answer(await continued.read())[1] == "WriteItems"
    # What an operator sees of it on /metrics.
    after = _wpi_metrics()
    assert after["opening"] - before["opening"] == 2
    assert after["continuing"] - before["continuing"] == 1
    assert after["turns"] - before["turns"] == 2
    assert after["turns_sum"] - before["turns_sum"] > RETRY_AFTER_MIN + KEEP_CONNECTION_FOR
    done = reply.replace(b"ReadAllItems", b"WriteItems")
    assert answer(await (await post(device_client, done, cookie)).read())[1] == "CleanUp"
    assert _wpi_metrics()["finished"] - before["finished"] == 1
    assert _wpi_metrics()["open"] == 0


async def test_slow_uploads_do_not_take_the_places_of_phones(
    device_client: TestClient[Any, Any], fleet: Fleet
) -> None:
    """Requests still sending their bodies (a slow link, or a client that never finishes)
    hold a connection each, not one of the places that bound the work under way."""
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    admission = device_client.server.app[WPI].admission
    admission.max_active = 2
    body = workpoint("start-up", *identity())
    slow = []
    for _ in range(admission.max_active):
        reader, writer = await asyncio.open_connection(device_client.host, device_client.port)
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: dls\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        await writer.drain()
        slow.append((reader, writer))
    await asyncio.sleep(0.2)  # their handlers wait for the rest
    response = await asyncio.wait_for(post(device_client, body), 5)
    assert response.status == 200, await response.text()
    assert answer(await response.read())[1] == "ReadAllItems"
    for _, writer in slow:
        writer.close()


def _wpi_metrics() -> dict[str, float]:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"listener": "device", **labels}) or 0.0

    return {
        "opening": sample("dls_wpi_refused_total", reason="opening"),
        "continuing": sample("dls_wpi_refused_total", reason="continuing"),
        "turns": sample("dls_wpi_retry_after_seconds_count"),
        "turns_sum": sample("dls_wpi_retry_after_seconds_sum"),
        "finished": sample("dls_wpi_interactions_total"),
        "open": sample("dls_wpi_open_interactions"),
    }


# --- unknown and assigned phones ---------------------------------------------------------


async def test_unknown_phone_is_recorded_with_its_inventory_and_gets_only_cleanup(
    make_phone: Any, services: Services
) -> None:
    phone: UnifyPhone = make_phone(MAC, e164="4930123456", pin="12345678")
    await phone.listen()
    (boot,) = await phone.start_up()
    assert boot.actions == ["CleanUp"]
    assert phone.items.get(("sip-pwd", None)) is None
    async with services.sessions() as session:
        unclaimed = await session.get(UnclaimedDevice, MAC)
        wpi = await session.get(WpiDevice, MAC)
    assert unclaimed is not None and unclaimed.vendor == "unify"
    assert unclaimed.model == "OpenStage 40" and unclaimed.firmware_version == "V3 R5.12.0"
    assert unclaimed.inventory is not None and unclaimed.inventory["e164"] == "4930123456"
    assert "cloud-pin-value" not in unclaimed.inventory  # a PIN is never stored
    assert wpi is not None and not wpi.bound and wpi.session_state is None
    assert wpi.contact_me_uri == phone.value("contact-me-uri")


async def test_unknown_phones_are_recorded_at_a_bounded_rate(
    device_client: TestClient[Any, Any], services: Services
) -> None:
    runtime = device_client.server.app[WPI]
    runtime.unclaimed_writes.burst = runtime.unclaimed_writes._tokens = 3
    runtime.unclaimed_writes.rate = 0.0
    for number in range(10):
        mac = f"001ae80000{number:02x}"
        response = await post(device_client, workpoint("start-up", *identity(mac)))
        assert answer(await response.read())[1] == "CleanUp"
    async with services.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(UnclaimedDevice))
    assert count == 3


async def test_assigned_phone_gets_its_settings_and_later_only_what_changed(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    await fleet.settings(
        Scope.TENANT,
        tenant.tenant_id,
        {"time": {"ntp_servers": ["ntp.example.net"], "time_zone": "Europe/Berlin"}},
    )
    await fleet.device(tenant, MAC, line={**LINE, "display_name": "Front Desk"})
    phone: UnifyPhone = make_phone(MAC)
    (first,) = await phone.start_up()
    assert first.actions == ["ReadAllItems", "WriteItems", "CleanUp"]
    assert phone.value("reg-addr") == "sip.example.net"
    assert phone.value("sip-pwd") == "line-secret-1"
    assert phone.value("sntp-tz-offset") == "60"
    assert phone.value("display-id-unicode") == "Front Desk"
    (second,) = await phone.start_up()
    # The phone does not read passwords back, so only sip-pwd is written again.
    assert second.written == {("sip-pwd", None): "line-secret-1"}
    async with services.sessions() as session:
        wpi = await session.get(WpiDevice, MAC)
    assert wpi is not None and wpi.bound and wpi.session_token_hash is None
    stored = {name: value for name, _, value in wpi.inventory or ()}
    assert stored["sip-pwd"].startswith("hmac:") and "line-secret-1" not in str(wpi.inventory)
    # A solicited session knows the inventory: the stored hash matches, nothing is written.
    (solicited,) = await phone.solicited()
    assert solicited.actions == ["CleanUp"]


async def test_session_lives_in_the_database_so_another_worker_continues_it(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    first = await post(device_client, workpoint("start-up", *identity()))
    cookie = first.cookies["JSESSIONID"]
    assert cookie["path"] == "/DeploymentService" and cookie["secure"] and cookie["httponly"]
    async with TestClient(TestServer(build_device_app(services))) as other_worker:
        reply = workpoint("reply-to", *identity(), action="ReadAllItems", status="accepted")
        second = await post(other_worker, reply, cookie.value)
        _, action, items = answer(await second.read())
        assert action == "WriteItems" and items["sip-pwd"] == "line-secret-1"
        done = await post(
            other_worker,
            workpoint("reply-to", action="WriteItems", status="accepted"),
            cookie.value,
        )
        assert answer(await done.read())[1] == "CleanUp"
        assert done.cookies["JSESSIONID"].value == ""  # dropped with the session
    stale = await post(
        device_client, workpoint("reply-to", action="WriteItems", status="accepted"), cookie.value
    )
    assert answer(await stale.read())[1] == "CleanUp"


async def test_a_cookie_cannot_move_to_another_phone(
    device_client: TestClient[Any, Any], fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    await fleet.device(tenant, "001ae8654321", line=LINE)
    first = await post(device_client, workpoint("start-up", *identity()))
    cookie = first.cookies["JSESSIONID"].value
    hijack = await post(device_client, workpoint("solicited", *identity("001ae8654321")), cookie)
    assert answer(await hijack.read())[1] == "CleanUp"


# --- jobs, busy, contact-me -------------------------------------------------------------


async def test_busy_phone_keeps_the_job_and_calls_back_when_idle(
    make_phone: Any, fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.start_up()
    job = await fleet.job(device, JobKind.RESTART)
    phone.in_call = True
    (busy,) = await phone.solicited()
    assert busy.actions == ["Restart", "CleanUp"] and busy.replies == ["busy"]
    assert busy.send_solicited
    assert (await fleet.job_state(job)).state is JobState.BUSY_RETRY
    callback, restarted = await phone.hang_up()
    assert (callback.reason, callback.actions) == ("solicited", ["Restart", "CleanUp"])
    assert restarted.reason == "start-up"
    row = await fleet.job_state(job)
    assert (row.state, row.attempts) == (JobState.ACCEPTED, 2)


async def test_contact_me_goes_to_the_phone_and_the_job_is_delivered(
    device_client: TestClient[Any, Any], make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.listen()
    await phone.start_up()
    job = await fleet.job(device, JobKind.PUSH_CONFIG)
    background = device_client.server.app[BACKGROUND]
    await background.contact_due()
    async with __import__("asyncio").timeout(10):
        await phone.wait_for(lambda p: len(p.interactions) == 2)
    (contact,) = phone.contacts
    assert contact["ContactMe"] == "true" and contact["dls_ip_addr"] == "127.0.0.1"
    assert contact["dls_ip_port"] == str(services.settings.device_port)
    assert phone.interactions[-1].reason == "solicited"
    assert (await fleet.job_state(job)).state is JobState.ACCEPTED
    async with services.sessions() as session:
        wpi = await session.get(WpiDevice, MAC)
    assert wpi is not None and wpi.last_contacted_at is not None
    # The contact gap: no second push within it, whatever is queued.
    await fleet.job(device, JobKind.PUSH_CONFIG)
    assert await background.contact_due() == 0


async def test_contact_me_to_another_host_is_refused(
    device_client: TestClient[Any, Any],
    fleet: Fleet,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    rogue = (
        *identity()[:-1],
        ("contact-me-uri", "http://10.9.9.9:8085/contact_dls.html/ContactDLS"),
    )
    await post(device_client, workpoint("inventory-changes", *rogue))
    await fleet.job(device, JobKind.RESTART)
    background = device_client.server.app[BACKGROUND]
    caplog.set_level(logging.INFO, "dls.wpi")
    assert await background.contact_due() == 1
    for task in list(background._contacts):
        await task
    assert any("another host" in record.msg for record in caplog.records)
    async with services.sessions() as session:
        wpi = await session.get(WpiDevice, MAC)
    assert wpi is not None and wpi.last_contacted_at is None


async def test_dcmp_poll_answers_pending_or_not(
    device_client: TestClient[Any, Any], fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    url = "/dcmp/contact-me?device-id="
    assert (await device_client.get(url + "00:1A:E8:12:34:56")).status == 200
    await fleet.job(device, JobKind.PUSH_CONFIG)
    pending = await device_client.get(url + "00-1a-e8-12-34-56")
    assert (pending.status, await pending.read()) == (202, b"")
    assert (await device_client.get(url + "001ae8ffffff")).status == 200  # unknown: same
    assert (await device_client.get(url + "not-a-mac")).status == 400
    statuses = [(await device_client.get(url + MAC)).status for _ in range(10)]
    assert 429 in statuses


# --- self-setup, local changes, deployments ---------------------------------------------


async def _pin(services: Services, user_id: int, tenant_id: str, pin: str = "24681357") -> None:
    import datetime as dt

    from dls.db.types import utcnow
    from dls.devices.unify import DeploymentPin, keyed_hash, pin_purpose

    async with services.sessions() as session, session.begin():
        session.add(
            DeploymentPin(
                user_id=user_id,
                tenant_id=tenant_id,
                pin_ciphertext=services.box.encrypt(pin, pin_purpose(user_id)),
                lookup_hash=keyed_hash(services.box).digest("deployment-pin", pin),
                line=1,
                attempts=0,
                expires_at=utcnow() + dt.timedelta(days=1),
            )
        )


async def test_self_setup_binds_an_unknown_phone_to_the_pin_user(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    user = await fleet.user(tenant, "desk-user")
    await fleet.settings(Scope.USER, str(user.id), {"lines": {1: LINE}})
    await _pin(services, user.id, tenant.tenant_id)
    wrong: UnifyPhone = make_phone("001ae8000077", pin="11112222")
    assert (await wrong.start_up())[0].actions == ["CleanUp"]
    phone: UnifyPhone = make_phone(MAC, pin="24681357")
    (boot,) = await phone.start_up()
    assert boot.actions == ["ReadAllItems", "WriteItems", "CleanUp"]
    assert phone.value("sip-pwd") == "line-secret-1"
    async with services.sessions() as session:
        entries = (await session.scalars(select(audit.AuditEntry))).all()
    (bound,) = [e for e in entries if e.action == "device.self_setup"]
    assert bound.actor_user_id == user.id and bound.changes["mac"] == MAC
    # Single use: another phone with the same PIN stays unknown.
    other: UnifyPhone = make_phone("001ae8000078", pin="24681357")
    assert (await other.start_up())[0].actions == ["CleanUp"]


async def test_self_setup_is_refused_and_audited_when_forbidden(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant(self_setup_allowed=True)
    user = await fleet.user(tenant, "no-self-setup", self_setup_override=False)
    await _pin(services, user.id, tenant.tenant_id)
    phone: UnifyPhone = make_phone(MAC, pin="24681357")
    (boot,) = await phone.start_up()
    assert boot.actions == ["CleanUp"]
    async with services.sessions() as session:
        entries = (await session.scalars(select(audit.AuditEntry))).all()
        unclaimed = await session.get(UnclaimedDevice, MAC)
    (refused,) = [e for e in entries if e.action == "device.self_setup_refused"]
    assert refused.changes["result"] == "self-setup is not allowed for this user"
    assert unclaimed is not None


async def test_local_changes_are_audited_and_managed_values_written_back(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.start_up()
    (change,) = await phone.local_change(
        {("reg-addr", None): "evil.example.net", ("ring-volume", None): "7"}
    )
    assert change.written == {("reg-addr", None): "sip.example.net"}
    async with services.sessions() as session:
        entries = (await session.scalars(select(audit.AuditEntry))).all()
    (local,) = [e for e in entries if e.action == "device.local_changes"]
    assert local.changes == {"accepted": ["ring-volume"], "overwritten": ["reg-addr"]}
    assert local.target_tenant_id == tenant.tenant_id


async def test_file_deployment_status_is_filed_on_the_job(
    device_client: TestClient[Any, Any], make_phone: Any, fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.start_up()
    logo = str(device_client.make_url("/healthz"))
    job = await fleet.job(
        device, JobKind.FILE_DEPLOYMENT, {"files": [{"url": logo, "file_type": "LOGO"}]}
    )
    deployment, status = await phone.solicited()
    assert deployment.actions == ["FileDeployment", "CleanUp"]
    assert status.reason == "status" and phone.downloads == [(logo, 200)]
    row = await fleet.job_state(job)
    assert row.state is JobState.ACCEPTED
    assert row.result is not None and row.result["healthz"]["status"] == "ok"


async def test_software_deployment_restarts_with_the_new_version(
    device_client: TestClient[Any, Any], make_phone: Any, fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.start_up()
    image = str(device_client.make_url("/healthz"))
    await fleet.job(device, JobKind.SOFTWARE_DEPLOYMENT, {"url": image, "version": "3.5.16.0"})
    deployment, restart = await phone.solicited()
    assert deployment.actions == ["SoftwareDeployment", "CleanUp"]
    assert restart.reason == "start-up" and phone.value("software-version") == "V3 R5.16.0"


async def test_required_secure_mode_withholds_passwords_and_sends_a_certificate(
    make_phone: Any, fleet: Fleet
) -> None:
    from cryptography import x509

    from dls.provisioning.wpi.identity import certificate_mac
    from dls.tenancy.models import WpiSecureMode

    tenant = await fleet.tenant(WpiSecureMode.REQUIRED)
    await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC, refuse_items=("goto-secure-mode",))
    (boot,) = await phone.start_up()
    assert ("sip-pwd", None) not in boot.written
    assert boot.written[("dls-secure-port", None)] == str(18444)
    assert boot.written[("dls-server-ca", 1)].startswith("-----BEGIN CERTIFICATE-----")
    bundle = boot.written[("dls-client-certificate", None)]
    assert "-----BEGIN PRIVATE KEY-----" in bundle
    certificate = x509.load_pem_x509_certificate(bundle.encode())
    assert certificate_mac(certificate) == MAC


async def test_a_fragmented_inventory_is_collected_before_acting(
    make_phone: Any, fleet: Fleet
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    phone: UnifyPhone = make_phone(MAC, fragment_size=2, items={("ssh-enable", None): "false"})
    (boot,) = await phone.start_up()
    assert boot.actions[:3] == ["ReadAllItems", "GetNextFragment", "GetNextFragment"]
    assert boot.actions[-2:] == ["WriteItems", "CleanUp"]
    assert phone.value("reg-addr") == "sip.example.net"


async def test_housekeeping_ends_idle_sessions_and_expires_jobs(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    import datetime as dt

    from dls.db.types import utcnow
    from dls.devices.unify import DeviceJob

    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC, line=LINE)
    await post(device_client, workpoint("start-up", *identity()))
    job = await fleet.job(device, JobKind.RESTART)
    past = utcnow() - dt.timedelta(seconds=1)
    async with services.sessions() as session, session.begin():
        phone = await session.get(WpiDevice, MAC)
        row = await session.get(DeviceJob, job)
        assert phone is not None and phone.session_state is not None and row is not None
        phone.session_expires_at = row.expires_at = past
    await device_client.server.app[BACKGROUND].maintain()
    async with services.sessions() as session:
        phone = await session.get(WpiDevice, MAC)
        row = await session.get(DeviceJob, job)
    assert phone is not None and phone.session_state is None and phone.session_token_hash is None
    assert row is not None and row.state is JobState.EXPIRED


async def test_pins_survive_a_key_rotation(fleet: Fleet, services: Services) -> None:
    import base64
    import secrets

    from dls.devices.unify import DeploymentPin, keyed_hash, pin_purpose, rotate_pins
    from dls.secretbox import SecretBox

    tenant = await fleet.tenant()
    user = await fleet.user(tenant, "rotated")
    await _pin(services, user.id, tenant.tenant_id, pin="97531864")
    new = SecretBox(base64.b64decode(base64.b64encode(secrets.token_bytes(32))))
    async with services.sessions() as session, session.begin():
        assert await rotate_pins(session, services.box, new) == 1
    async with services.sessions() as session:
        row = await session.scalar(select(DeploymentPin))
    assert row is not None
    assert new.decrypt(row.pin_ciphertext, pin_purpose(user.id)) == "97531864"
    assert row.lookup_hash == keyed_hash(new).digest("deployment-pin", "97531864")


async def test_a_configured_phone_is_provisioned_through_the_ledger(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    from dls.devices.effective import load_context
    from dls.devices.models import DeviceStatus

    tenant = await fleet.tenant()
    user = await fleet.user(tenant, "ledger-user")
    await fleet.device(tenant, MAC, user=user, line=LINE)
    phone: UnifyPhone = make_phone(MAC)
    await phone.start_up()
    await services.ledger.flush()
    async with services.sessions() as session:
        context = await load_context(session, mac=MAC)
    assert context is not None
    assert context.device.status is DeviceStatus.PROVISIONED
    assert context.device.last_revision == context.revision
    assert context.device.firmware_version == "V3 R5.12.0"
    assert context.device.last_address == "127.0.0.1"


async def test_a_protocol_violation_is_logged_and_ends_the_interaction(
    device_client: TestClient[Any, Any], fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    caplog.set_level(logging.WARNING, "dls.wpi")
    orphan = workpoint("reply-to", *identity(), action="WriteItems", status="accepted")
    response = await post(device_client, orphan)
    assert response.status == 200
    assert answer(await response.read())[1] == "CleanUp"
    (record,) = [r for r in caplog.records if "protocol violation" in r.msg]
    assert record.fields["reason"] == "reply-to without an outstanding request"  # type: ignore[attr-defined]


# --- concurrent messages of one phone ------------------------------------------------------


async def _another_worker_writes(services: Services) -> None:
    """What a message of the same phone on another worker does to its row meanwhile."""
    async with services.sessions() as session, session.begin():
        await session.execute(
            update(WpiDevice)
            .where(WpiDevice.mac == MAC)
            .values(version=WpiDevice.version + 1, last_address="192.0.2.99")
        )


async def test_a_message_racing_another_of_its_phone_is_decided_again(
    device_client: TestClient[Any, Any],
    fleet: Fleet,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The phone's row is read outside any lock and written back only if unchanged: when
    another message wrote in between, this one is decided again from a fresh read, not
    written over it."""
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    first = await post(device_client, workpoint("start-up", *identity()))
    cookie = first.cookies["JSESSIONID"].value
    bursts: list[int] = []
    run = services.writes.run

    async def racing(writes: Any) -> None:
        bursts.append(len(writes))
        if len(bursts) == 1:
            await _another_worker_writes(services)
        await run(writes)

    monkeypatch.setattr(services.writes, "run", racing)
    reply = workpoint("reply-to", *identity(), action="ReadAllItems", status="accepted")
    second = await post(device_client, reply, cookie)
    _, action, items = answer(await second.read())
    assert (second.status, action, items["sip-pwd"]) == (200, "WriteItems", "line-secret-1")
    assert len(bursts) == 2
    async with services.sessions() as session:
        wpi = await session.get(WpiDevice, MAC)
    assert wpi is not None
    # Inserted by the start-up (1), written by the other worker (2), then by this one (3).
    assert (wpi.version, wpi.last_address) == (3, "127.0.0.1")
    done = await post(
        device_client, workpoint("reply-to", action="WriteItems", status="accepted"), cookie
    )
    assert answer(await done.read())[1] == "CleanUp"


async def test_a_message_that_keeps_losing_the_race_gets_503(
    device_client: TestClient[Any, Any],
    fleet: Fleet,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await fleet.tenant()
    await fleet.device(tenant, MAC, line=LINE)
    run = services.writes.run

    async def always_late(writes: Any) -> None:
        await _another_worker_writes(services)
        await run(writes)

    await post(device_client, workpoint("start-up", *identity()))  # the row exists
    monkeypatch.setattr(services.writes, "run", always_late)
    refused = await post(device_client, workpoint("start-up", *identity()))
    assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (ConnectionRefusedError(111, "Connection refused"), ("WARNING", False)),
        (StaleDataError("UPDATE devices matched 0 rows"), ("WARNING", False)),
        (IntegrityError("INSERT", None, Exception("a bug")), ("ERROR", True)),
    ],
    ids=["database-away", "lost-a-race", "bug"],
)
async def test_a_database_failure_is_503_and_logged_by_what_it_is(
    device_client: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    logged: tuple[str, bool],
) -> None:
    """During a database restart every phone's message fails: one warning line each, as
    any request's (dls.middleware), not a traceback each; a bug still shows its own."""

    async def failing(*_: Any) -> Any:
        raise failure

    monkeypatch.setattr(handler_module, "exchange", failing)
    caplog.set_level(logging.WARNING, logger=handler_module.log.name)
    refused = await post(device_client, workpoint("start-up", *identity()))
    assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
    records = [r for r in caplog.records if r.name == handler_module.log.name]
    assert [(r.levelname, r.exc_info is not None) for r in records] == [logged]
    assert "WPI exchange" in records[0].getMessage()
