"""Devices, their groups, the settings documents of every level, unclaimed devices and the
provisioning ledger."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow

__all__ = [
    "Device",
    "DeviceGroup",
    "DeviceStatus",
    "ProvisioningRecord",
    "Scope",
    "SettingsDocument",
    "UnclaimedDevice",
]


class DeviceStatus(enum.StrEnum):
    """Life cycle: unassigned -> assigned -> sent_to_user -> provisioned -> active; retired."""

    UNASSIGNED = "unassigned"  # registered to a tenant, no user yet
    ASSIGNED = "assigned"  # a user (and line) is set
    SENT_TO_USER = "sent_to_user"  # shipped; nothing external is notified
    PROVISIONED = "provisioned"  # first successful configuration fetch
    ACTIVE = "active"  # fetched again after being provisioned: it runs on our config
    RETIRED = "retired"  # no longer served; kept for the record


class RefusalReason(enum.StrEnum):
    """Why a request naming a registered device did not prove it was that device: kept on
    the device for its admin, since the phone itself gets the answer everyone gets (404,
    or 401). A challenge is otherwise the protocol's first step (no credentials yet, a
    stale or unknown nonce), not a refusal; only where a certificate that is not the
    device's came without Digest is the challenge where the phone stops."""

    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - Digest's response does not match
    NO_PASSWORD = "no_password"  # noqa: S105 - Digest sent, but the device has none set
    WRONG_URI = "wrong_uri"  # the response was for another request-target (a proxy?)
    # A verified client certificate that is not this device's, and no Digest: one of dls's
    # device CA replaced or revoked since, or a vendor's naming another MAC.
    WRONG_CERTIFICATE = "wrong_certificate"


class Scope(enum.StrEnum):
    """Which level a settings document belongs to (see dls.devices.inheritance.Level)."""

    SYSTEM = "system"
    TENANT = "tenant"
    GROUP = "group"
    USER = "user"
    DEVICE = "device"


class SettingsDocument(Base):
    """One level's sparse settings; secrets inside are AES-GCM ciphertexts.

    ``revision`` grows with every change; a device's configuration revision is made of the
    revisions of the documents it inherits from, so a change to a tenant's settings needs
    no write to each of its devices.
    """

    __tablename__ = "settings_documents"
    __table_args__ = (UniqueConstraint("scope", "scope_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[Scope] = mapped_column(enum_column(Scope))
    scope_key: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    # The revision is also a version counter: an ORM update is "... WHERE revision = the one
    # read", so two changes that read the same revision cannot both commit (the second
    # raises StaleDataError). Without it two admins' PUTs on PostgreSQL both wrote
    # revision n + 1 with different contents, and a rendering cached for the first was
    # served for the second. Code sets the next value itself (only when data changes).
    __mapper_args__ = {"version_id_col": revision, "version_id_generator": False}


class DeviceGroup(Base):
    __tablename__ = "device_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_tenant_status", "tenant_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mac: Mapped[str] = mapped_column(String(12), unique=True)  # 12 lower-case hex digits
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    user_line: Mapped[int] = mapped_column(SmallInteger, default=1)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("device_groups.id"), index=True)
    status: Mapped[DeviceStatus] = mapped_column(
        enum_column(DeviceStatus), default=DeviceStatus.UNASSIGNED
    )
    # Bumped when an assignment that shapes the configuration changes (user, line, group,
    # model); part of the device's configuration revision, and its version counter (as
    # SettingsDocument's): two admin changes based on the same read cannot both commit.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    digest_password: Mapped[str | None] = mapped_column(String(200))  # ciphertext
    # The client certificate dls's device CA issued for it (dls.devices.client_certificates)
    # by SHA-256 fingerprint: the only one of that CA it accepts from this device, so
    # issuing another or revoking takes effect without a revocation list.
    client_certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    client_certificate_not_after: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    first_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_address: Mapped[str | None] = mapped_column(String(64))
    last_user_agent: Mapped[str | None] = mapped_column(String(255))
    last_revision: Mapped[str | None] = mapped_column(String(64))
    # The last request that named it and did not prove it (RefusalReason): when, why and
    # from where. Written with the ledger's batches, like last_seen.
    last_refused_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_refused_reason: Mapped[RefusalReason | None] = mapped_column(enum_column(RefusalReason))
    last_refused_address: Mapped[str | None] = mapped_column(String(64))
    shipped_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    shipment_ref: Mapped[str | None] = mapped_column(String(100))
    retired_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": revision, "version_id_generator": False}


class UnclaimedDevice(Base):
    """A device that asked for its configuration but is registered to no tenant."""

    __tablename__ = "unclaimed_devices"

    mac: Mapped[str] = mapped_column(String(12), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    inventory: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    requests: Mapped[int] = mapped_column(Integer, default=1)


class ProvisioningRecord(Base):
    """One successful fetch: what a device took, when, from where. Written in batches."""

    __tablename__ = "provisioning_ledger"
    __table_args__ = (
        Index("ix_provisioning_ledger_device", "device_id", "id"),
        # Retention deletes by age (dls.provisioning.retention). Rows arrive in time order,
        # so this index only grows at its end: a cheap one to keep per fetch.
        Index("ix_provisioning_ledger_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    file: Mapped[str] = mapped_column(String(128))
    content_hash: Mapped[str] = mapped_column(String(64))
    revision: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
