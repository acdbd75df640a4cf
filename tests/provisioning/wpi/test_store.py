"""What is kept of a phone's inventory, and how job rows become engine jobs."""

from __future__ import annotations

import datetime as dt

from dls.devices.unify import DeviceJob, JobKind, JobState, KeyedHash
from dls.provisioning.wpi.effects import DeploymentStatus, RecordDeploymentStatus
from dls.provisioning.wpi.items import Item
from dls.provisioning.wpi.messages import FileDeployment, SoftwareDeployment
from dls.provisioning.wpi.store import (
    engine_job,
    merge_inventory,
    record_deployment_status,
    snapshot_inventory,
)

HASH = KeyedHash(b"k" * 32)
MAC = "001ae8123456"


def test_secrets_bootstrap_items_and_pins_are_never_stored() -> None:
    stored = merge_inventory(
        None,
        [
            Item("reg-addr", "sip.example.net"),
            Item("sip-pwd", "s3cret"),
            Item("dls-client-certificate", "-----BEGIN PRIVATE KEY-----"),
            Item("goto-secure-mode", "nopin"),
            Item("cloud-pin-value", "12345678"),
            Item("function-key-def", "1", 3),
            Item("unreadable", "", failed=True),
        ],
        complete=True,
        hasher=HASH,
        mac=MAC,
    )
    text = str(stored)
    assert "s3cret" not in text and "PRIVATE" not in text and "12345678" not in text
    names = [name for name, _, _ in stored]
    assert names == ["reg-addr", "sip-pwd", "function-key-def"]
    assert ["function-key-def", 3, "1"] in stored


def test_a_secret_the_phone_holds_is_recognised_not_rewritten() -> None:
    stored = merge_inventory(
        None, [Item("sip-pwd", "s3cret")], complete=False, hasher=HASH, mac=MAC
    )
    # A complete report without passwords keeps the hash of what we wrote.
    stored = merge_inventory(stored, [Item("reg-addr", "x")], complete=True, hasher=HASH, mac=MAC)
    same = snapshot_inventory(stored, [Item("sip-pwd", "s3cret")], HASH, MAC)
    changed = snapshot_inventory(stored, [Item("sip-pwd", "new")], HASH, MAC)
    assert same is not None and Item("sip-pwd", "s3cret") in same
    assert changed is not None and Item("sip-pwd", "new") not in changed
    assert snapshot_inventory(None, [], HASH, MAC) is None
    other_phone = snapshot_inventory(stored, [Item("sip-pwd", "s3cret")], HASH, "001ae8000000")
    assert other_phone is not None and Item("sip-pwd", "s3cret") not in other_phone


def test_job_rows_become_engine_jobs_or_none() -> None:
    files = DeviceJob(
        id=1,
        kind=JobKind.FILE_DEPLOYMENT,
        payload={"files": [{"url": "https://x/logo.png", "file_type": "LOGO", "action": "deploy"}]},
    )
    job = engine_job(files)
    assert job is not None and isinstance(job.deployment, FileDeployment)
    firmware = DeviceJob(
        id=2,
        kind=JobKind.SOFTWARE_DEPLOYMENT,
        payload={"url": "https://x/fw", "version": "3.5.16.0"},
    )
    job = engine_job(firmware)
    assert job is not None and isinstance(job.deployment, SoftwareDeployment)
    assert engine_job(DeviceJob(id=3, kind=JobKind.RESTART, payload={})) is not None
    broken = DeviceJob(id=4, kind=JobKind.FILE_DEPLOYMENT, payload={"files": [{"type": "?"}]})
    assert engine_job(broken) is None


def _status(name: str, file_type: str | None, ok: bool = False) -> RecordDeploymentStatus:
    status = DeploymentStatus.OK if ok else DeploymentStatus.FAILED
    return RecordDeploymentStatus(1, name, file_type, status, None, None)


def test_a_status_report_finds_its_job_by_file_name_and_type() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    logo = DeviceJob(
        id=1,
        kind=JobKind.FILE_DEPLOYMENT,
        state=JobState.ACCEPTED,
        payload={"files": [{"url": "https://x/files/os40(v3).img", "file_type": "LOGO"}]},
    )
    image = DeviceJob(
        id=2,
        kind=JobKind.SOFTWARE_DEPLOYMENT,
        state=JobState.ACCEPTED,
        payload={"url": "https://x/fw/token/os40(v3).img", "version": "3.5.16.0"},
    )
    encoded = DeviceJob(
        id=3,
        kind=JobKind.SOFTWARE_DEPLOYMENT,
        state=JobState.ACCEPTED,
        payload={"url": "https://x/fw/token/OpenStage%2040.img", "version": "3.5.16.0"},
    )
    jobs = [logo, image, encoded]
    # Same name: an APP result is the image's, any other type the file's.
    assert record_deployment_status(jobs, _status("os40(v3).img", "LOGO", ok=True), now) is logo
    assert logo.state is JobState.ACCEPTED
    assert record_deployment_status(jobs, _status("os40(v3).img", "APP"), now) is image
    assert image.state is JobState.FAILED
    assert image.detail == "file os40(v3).img failed on the phone"
    assert image.result == {
        "os40(v3).img": {"status": "failed", "type": "APP", "date": None, "time": None}
    }
    # Without a type the newest job naming the file; names are matched decoded too.
    assert record_deployment_status(jobs, _status("OpenStage 40.img", None), now) is encoded
    assert record_deployment_status(jobs, _status("other.img", "APP"), now) is None
