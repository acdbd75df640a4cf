"""Firmware tables: imported images, target versions, rollouts with their waves and devices.

- ``firmware_images`` is one row per stored file (the bytes are in the blob store under
  its SHA-256), ``firmware_image_models`` says which (vendor, model, version) it serves:
  one image per model and version, found with one primary-key lookup.
- ``firmware_targets`` holds the version a model should run, per level: the operator's
  default (system), a tenant's, a device group's. A device-level pin is the device's own
  ``firmware.version`` setting, not a row here.
- ``firmware_rollouts`` / ``_waves`` / ``_devices`` are a rollout's state; the database is
  the source of truth, so any instance's driver may advance it. The rollout row carries a
  version counter (``lock_version``): a driver or an admin that decided on stale facts
  fails its commit instead of overwriting.

Versions are stored as written and as ``version_key`` (``dls.firmware.versions``), which
joins and comparisons use.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow
from dls.firmware.engine import DeviceState, RolloutStatus, WaveStatus

__all__ = [
    "ChecksumSource",
    "FirmwareImage",
    "FirmwareImageModel",
    "FirmwareTarget",
    "Rollout",
    "RolloutDevice",
    "RolloutWave",
    "TargetScope",
]


class ChecksumSource(enum.StrEnum):
    """Who vouches for an image's bytes."""

    CATALOG = "catalog"  # the manifest publishes its SHA-256 and the import matched it
    OPERATOR = "operator"  # no published digest: the digest is what the operator imported


class TargetScope(enum.StrEnum):
    """Levels of a target version, least specific first; a device pin beats them all."""

    SYSTEM = "system"  # the operator's default for a model
    TENANT = "tenant"
    GROUP = "group"


class FirmwareImage(Base):
    __tablename__ = "firmware_images"
    __table_args__ = (UniqueConstraint("vendor", "version_key", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64))
    version_key: Mapped[str] = mapped_column(String(64))
    models: Mapped[list[str]] = mapped_column(JSON)  # validated model names, as registered
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    file_name: Mapped[str] = mapped_column(String(255))
    checksum_source: Mapped[ChecksumSource] = mapped_column(enum_column(ChecksumSource))
    imported_by: Mapped[int | None] = mapped_column(Integer)  # user id; None: the CLI
    imported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class FirmwareImageModel(Base):
    """Which image a (vendor, model, version) gets; ``model_key`` is catalog.model_key."""

    __tablename__ = "firmware_image_models"

    vendor: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("firmware_images.id", ondelete="CASCADE"), index=True
    )


class FirmwareTarget(Base):
    __tablename__ = "firmware_targets"
    # The device path looks targets up by (vendor, model) first, then the three levels.
    __table_args__ = (UniqueConstraint("vendor", "model_key", "scope", "scope_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[TargetScope] = mapped_column(enum_column(TargetScope))
    scope_key: Mapped[str] = mapped_column(String(32))  # "system", a tenant id, a group id
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))  # the validated model name
    model_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    version_key: Mapped[str] = mapped_column(String(64))
    updated_by: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Rollout(Base):
    __tablename__ = "firmware_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # None: an operator rollout across tenants (optionally limited to ``tenant_ids``).
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("device_groups.id"))
    tenant_ids: Mapped[list[str] | None] = mapped_column(JSON)
    targets: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # [{vendor, model, version}]
    status: Mapped[RolloutStatus] = mapped_column(enum_column(RolloutStatus), index=True)
    failure_threshold_percent: Mapped[int] = mapped_column(Integer)
    wave_timeout_seconds: Mapped[int] = mapped_column(Integer)
    soak_seconds: Mapped[int] = mapped_column(Integer, default=0)
    window: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    accepted_failures: Mapped[int] = mapped_column(Integer, default=0)
    halted_reason: Mapped[str | None] = mapped_column(String(255))
    excluded: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # reason -> devices
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    lock_version: Mapped[int] = mapped_column(Integer)

    __mapper_args__ = {"version_id_col": lock_version}


class RolloutWave(Base):
    __tablename__ = "firmware_rollout_waves"

    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("firmware_rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    wave: Mapped[int] = mapped_column(Integer, primary_key=True)  # from 0
    percent: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[WaveStatus] = mapped_column(enum_column(WaveStatus))
    released_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class RolloutDevice(Base):
    __tablename__ = "firmware_rollout_devices"
    __table_args__ = (
        # The device path: "is this device in an active rollout?" by device id.
        Index("ix_firmware_rollout_devices_device", "device_id"),
        Index("ix_firmware_rollout_devices_progress", "rollout_id", "wave", "state"),
    )

    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("firmware_rollouts.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))  # this device's target
    version_key: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[str | None] = mapped_column(String(64))  # reported when created
    reported_version: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[DeviceState] = mapped_column(enum_column(DeviceState))
    detail: Mapped[str | None] = mapped_column(String(255))  # why it failed
    offered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    download_started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
