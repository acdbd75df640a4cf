"""Firmware targets and rollouts reaching Unify phones as SoftwareDeployment jobs.

The device application runs in-process over plain HTTP, so the signed download URLs
(which name the HTTPS device listener, here an address where nothing listens) cannot be
fetched: a phone given one fails its install, which is what the failure tests want.
Successful downloads and installs are in tests/e2e/test_firmware.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dls.config import Settings
from dls.db.types import utcnow
from dls.devices.models import Device, Scope
from dls.devices.unify import DeviceJob, JobKind, JobState
from dls.firmware.delivery import select_firmware
from dls.firmware.engine import DeviceState, WavePlan
from dls.firmware.models import RolloutDevice, TargetScope
from dls.firmware.rollouts import RolloutRequest, TargetSpec, create_rollout
from dls.firmware.targets import set_target
from dls.provisioning.wpi.dispatch import BACKGROUND, STALE_SENT
from dls.provisioning.wpi.firmware import ORIGIN, wpi_version
from dls.provisioning.wpi.store import MAX_JOB_ATTEMPTS
from dls.services import Services
from dls.sim.unify import UnifyPhone
from dls.tenancy.models import Tenant
from tests.conftest import in_process_services
from tests.firmware.conftest import Fleet as Images
from tests.provisioning.wpi.conftest import Fleet
from tests.provisioning.wpi.test_handler import answer, identity, post, workpoint

pytestmark = pytest.mark.db

MAC = "001ae8123456"
MODEL = "OpenStage 40"
RUNNING = "V3 R5.12.0"  # what identity() reports
TARGET = "3.5.16.0"
UNREACHABLE = "https://127.0.0.1:9"  # the discard port: downloads are refused at once
URL_TTL = 3600


@pytest.fixture
async def services(
    engine: AsyncEngine, make_settings: Callable[..., Settings]
) -> AsyncIterator[Services]:
    """The WPI services, with download URLs that lead nowhere and a one-hour URL TTL."""
    settings = make_settings(public_device_url=UNREACHABLE, firmware_url_ttl=URL_TTL)
    services = in_process_services(settings, engine)
    yield services
    await services.reads.dispose()


async def target(services: Services, tenant: Tenant, version: str | None) -> None:
    """The tenant's target for the model (None removes it)."""
    async with services.sessions() as session, session.begin():
        await set_target(
            session, TargetScope.TENANT, tenant.tenant_id, "unify", MODEL, version,
            updated_by=None, now=utcnow(),
        )  # fmt: skip


async def software_jobs(services: Services, device: Device) -> list[DeviceJob]:
    async with services.sessions() as session:
        rows = await session.scalars(
            select(DeviceJob)
            .where(DeviceJob.device_id == device.id, DeviceJob.kind == JobKind.SOFTWARE_DEPLOYMENT)
            .order_by(DeviceJob.id)
        )
        return list(rows)


async def set_job_state(services: Services, job_id: int, state: JobState) -> None:
    async with services.sessions() as session, session.begin():
        row = await session.get(DeviceJob, job_id)
        assert row is not None
        row.state = state


async def start_up(client: TestClient[Any, Any], version: str = RUNNING) -> str:
    """The first message of a start-up interaction, never continued; the action answered."""
    items = tuple(
        (name, version if name == "software-version" else value) for name, value in identity()
    )
    response = await post(client, workpoint("start-up", *items))
    return answer(await response.read())[1]


async def member(services: Services, rollout_id: int, device: Device) -> RolloutDevice:
    async with services.sessions() as session:
        row = await session.get(RolloutDevice, (rollout_id, device.id))
        assert row is not None
        return row


async def rollout(services: Services, tenant: Tenant) -> int:
    async with services.sessions() as session, session.begin():
        created = await create_rollout(
            session,
            RolloutRequest(
                name="unify",
                targets=(TargetSpec("unify", MODEL, TARGET),),
                waves=(WavePlan(100),),
                failure_threshold_percent=0,
                wave_timeout=dt.timedelta(hours=1),
                tenant_id=tenant.tenant_id,
            ),
            created_by=None,
            now=utcnow(),
        )
        return created.id


async def until_software_deployment(client: TestClient[Any, Any]) -> tuple[str, dict[str, str]]:
    """Play a phone's start-up that accepts everything until a SoftwareDeployment comes;
    the session cookie and that command's items."""
    first = await post(client, workpoint("start-up", *identity()))
    cookie = first.cookies["JSESSIONID"].value
    body = workpoint("reply-to", *identity(), action="ReadAllItems", status="accepted")
    for _ in range(5):
        action, items = answer(await (await post(client, body, cookie)).read())[1:]
        if action == "SoftwareDeployment":
            return cookie, items
        assert action == "WriteItems", action
        body = workpoint("reply-to", action=action, status="accepted")
    raise AssertionError("no SoftwareDeployment")


# --- queueing --------------------------------------------------------------------------


async def test_a_phone_running_another_version_gets_one_software_deployment_job(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    await target(services, tenant, TARGET)
    before = utcnow()
    assert await start_up(device_client) == "ReadAllItems"
    (job,) = await software_jobs(services, device)
    assert job.state is JobState.PENDING and job.created_by is None
    assert job.payload["url"].startswith(f"{UNREACHABLE}/fw/")
    assert job.payload["url"].endswith(f"/unify-{TARGET}.rom")
    assert {key: job.payload[key] for key in ("version", "priority", "origin", "source")} == {
        "version": TARGET,
        "priority": "normal",
        "origin": ORIGIN,
        "source": "tenant",
    }
    half = dt.timedelta(seconds=URL_TTL / 2)  # well within the URL's own lifetime
    assert before + half <= job.expires_at <= utcnow() + half
    # A second interaction while the job waits queues nothing more.
    assert await start_up(device_client) == "ReadAllItems"
    assert [row.id for row in await software_jobs(services, device)] == [job.id]


async def test_the_job_is_sent_in_the_interaction_that_queued_it(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    await target(services, tenant, TARGET)
    phone: UnifyPhone = make_phone(MAC)
    boot, *_ = await phone.start_up()
    assert boot.actions[0] == "ReadAllItems" and boot.actions[-2:] == [
        "SoftwareDeployment",
        "CleanUp",
    ]
    (job,) = await software_jobs(services, device)
    assert job.attempts == 1
    assert phone.installs[0].url == job.payload["url"]
    assert phone.installs[0].version == TARGET


async def test_no_job_when_the_phone_runs_the_offered_version_or_nothing_is_offered(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", "3.5.12.0", (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    assert await start_up(device_client) == "ReadAllItems"  # no target at all
    await target(services, tenant, "3.5.12.0")  # what the phone reports as V3 R5.12.0
    assert await start_up(device_client) == "ReadAllItems"
    # The device's own pin wins over the target: a version without an imported image.
    await fleet.settings(Scope.DEVICE, str(device.id), {"firmware": {"version": "3.5.13.0"}})
    async with services.sessions() as session:
        selection = await select_firmware(session, device, "3.5.13.0", utcnow())
    assert selection is not None and selection.image is None
    assert await start_up(device_client) == "ReadAllItems"
    assert await software_jobs(services, device) == []


async def test_the_devices_own_pin_is_offered_from_its_loaded_settings(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    images = Images(services)
    await images.image("unify", TARGET, (MODEL,))
    await images.image("unify", "3.5.13.0", (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    await target(services, tenant, TARGET)
    await fleet.settings(Scope.DEVICE, str(device.id), {"firmware": {"version": "3.5.13.0"}})
    await start_up(device_client)
    (job,) = await software_jobs(services, device)
    assert (job.payload["source"], job.payload["version"]) == ("pin", "3.5.13.0")


@pytest.mark.parametrize("settled", [JobState.ACCEPTED, JobState.FAILED])
async def test_a_settled_version_is_not_queued_again_but_a_new_one_is(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services, settled: JobState
) -> None:
    images = Images(services)
    await images.image("unify", TARGET, (MODEL,))
    await images.image("unify", "3.5.17.0", (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    await target(services, tenant, TARGET)
    await start_up(device_client)
    (first,) = await software_jobs(services, device)
    # The phone took (or refused) the image and still runs its old version.
    await set_job_state(services, first.id, settled)
    await start_up(device_client)
    await start_up(device_client)
    assert [row.id for row in await software_jobs(services, device)] == [first.id]
    await target(services, tenant, "3.5.17.0")
    await start_up(device_client)
    *_, second = await software_jobs(services, device)
    assert second.id != first.id and second.payload["version"] == "3.5.17.0"


async def test_an_admins_active_job_is_left_alone_and_counts_as_the_install(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    pushed = await fleet.job(
        device, JobKind.SOFTWARE_DEPLOYMENT, {"url": "https://x/fw.img", "version": "3.5.9.0"}
    )
    await target(services, tenant, TARGET)
    await start_up(device_client)
    (job,) = await software_jobs(services, device)
    assert job.id == pushed and job.state is JobState.PENDING


async def test_a_queued_job_is_withdrawn_when_its_version_is_no_longer_offered(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    await target(services, tenant, TARGET)
    await start_up(device_client)
    await target(services, tenant, None)
    await start_up(device_client)
    (job,) = await software_jobs(services, device)
    assert job.state is JobState.EXPIRED
    assert job.detail == "withdrawn: this version is no longer offered"
    # Offered again, and meanwhile installed by other means: nothing to queue or keep.
    await target(services, tenant, TARGET)
    await start_up(device_client)
    *_, again = await software_jobs(services, device)
    assert again.id != job.id and again.state is JobState.PENDING
    await start_up(device_client, version="V3 R5.16.0")
    assert [row.state for row in await software_jobs(services, device)] == [JobState.EXPIRED] * 2


# --- failures reach the rollout -----------------------------------------------------------


async def test_a_failed_install_fails_the_device_in_its_rollout_once(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    rollout_id = await rollout(services, tenant)
    assert (await member(services, rollout_id, device)).state is DeviceState.OFFERED
    phone: UnifyPhone = make_phone(MAC)
    boot, status = await phone.start_up()
    assert boot.actions[-2:] == ["SoftwareDeployment", "CleanUp"]
    assert status.reason == "status"  # the download was refused: a failed install
    assert phone.value("software-version") == RUNNING
    (job,) = await software_jobs(services, device)
    assert job.state is JobState.FAILED
    assert job.payload["source"] == "rollout" and job.payload["rollout_id"] == rollout_id
    name = job.payload["url"].rsplit("/", 1)[-1]
    assert job.result is not None and job.result[name]["type"] == "APP"
    failed = await member(services, rollout_id, device)
    assert failed.state is DeviceState.FAILED
    assert failed.detail == (
        f"reported failure: SoftwareDeployment {TARGET} (job {job.id}): "
        f"file {name} failed on the phone"
    )
    # No second attempt: the rollout counts the device as failed, an admin decides.
    (again,) = await phone.start_up()
    assert "SoftwareDeployment" not in again.actions
    assert len(await software_jobs(services, device)) == 1


async def test_a_phone_told_to_fail_reports_the_app_file_failed(
    make_phone: Any, fleet: Fleet, services: Services
) -> None:
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    phone: UnifyPhone = make_phone(MAC, fail_firmware=True)
    await phone.start_up()
    # An image the phone can download (any 200 will do): it still fails the install.
    image = str(phone.device_url) + "/healthz"
    job_id = await fleet.job(device, JobKind.SOFTWARE_DEPLOYMENT, {"url": image, "version": TARGET})
    deployment, status = await phone.solicited()
    assert deployment.actions == ["SoftwareDeployment", "CleanUp"] and status.reason == "status"
    (install,) = phone.installs
    assert install.status == 200 and install.sha256 is not None and not install.installed
    assert phone.value("software-version") == RUNNING
    row = await fleet.job_state(job_id)
    assert row.state is JobState.FAILED and row.result is not None
    assert row.result["healthz"]["status"] == "failed"


async def admins_job_in_rollout(fleet: Fleet, services: Services) -> tuple[Device, int, int]:
    """A device in a rollout of TARGET with an admin's job for that version: the device,
    the rollout's id and the job's."""
    await Images(services).image("unify", TARGET, (MODEL,))
    tenant = await fleet.tenant()
    device = await fleet.device(tenant, MAC)
    rollout_id = await rollout(services, tenant)
    job_id = await fleet.job(
        device, JobKind.SOFTWARE_DEPLOYMENT, {"url": "https://x/os40.img", "version": TARGET}
    )
    return device, rollout_id, job_id


async def sent_too_often(services: Services, job_id: int, at: dt.datetime | None = None) -> None:
    """The job was sent as often as allowed (last at ``at``) and never answered."""
    async with services.sessions() as session, session.begin():
        row = await session.get(DeviceJob, job_id)
        assert row is not None
        row.attempts, row.state = MAX_JOB_ATTEMPTS, JobState.SENT
        if at is not None:
            row.updated_at = at


@pytest.mark.parametrize("ending", ["refused", "unanswered"])
async def test_a_software_job_that_ends_failed_fails_the_rollout_device(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services, ending: str
) -> None:
    device, rollout_id, job_id = await admins_job_in_rollout(fleet, services)
    if ending == "unanswered":
        await sent_too_often(services, job_id)  # the next send is one too many
    cookie, items = await until_software_deployment(device_client)
    assert items["file-sw-version"] == TARGET
    if ending == "refused":
        refused = workpoint("reply-to", action="SoftwareDeployment", status="failed")
        assert answer(await (await post(device_client, refused, cookie)).read())[1] == "CleanUp"
    row = await fleet.job_state(job_id)
    assert row.state is JobState.FAILED
    failed = await member(services, rollout_id, device)
    assert failed.state is DeviceState.FAILED
    assert failed.detail is not None and f"(job {job_id})" in failed.detail


# --- versions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "sent"),
    [
        ("3.5.16.0", "3.5.16.0"),
        ("3.5.21.0000", "3.5.21.0000"),  # the catalog's spelling goes out as imported
        ("V3 R5.16.0", "3.5.16.0"),
        ("v3r5.16.0", "3.5.16.0"),
        ("1.10.2.0002", "1.10.2.0002"),
        ("83.V2.65.0", None),
        ("latest", None),
    ],
)
def test_versions_are_sent_dotted(version: str, sent: str | None) -> None:
    assert wpi_version(version) == sent


async def test_a_software_job_housekeeping_gives_up_on_fails_the_rollout_device(
    device_client: TestClient[Any, Any], fleet: Fleet, services: Services
) -> None:
    device, rollout_id, job_id = await admins_job_in_rollout(fleet, services)
    # Sent as often as allowed, long ago, and never answered: the phone went away.
    await sent_too_often(services, job_id, utcnow() - STALE_SENT - dt.timedelta(seconds=1))

    await device_client.server.app[BACKGROUND].maintain()

    assert (await fleet.job_state(job_id)).state is JobState.FAILED
    failed = await member(services, rollout_id, device)
    assert failed.state is DeviceState.FAILED
    assert failed.detail is not None and f"(job {job_id}): never answered" in failed.detail
