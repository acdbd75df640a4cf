"""Unify (WPI) state shared by the admin API and the device path: jobs, PINs, per-phone state.

Three tables. ``device_jobs`` is the per-device work queue any instance can deliver.
``deployment_pins`` holds each user's self-setup PIN, encrypted so it can be shown again
and keyed-hashed so a phone's PIN finds its user with one indexed lookup. ``wpi_devices``
is one row per Unify MAC the device path has met: the last reported inventory, where the
phone talks from, contact-me bookkeeping, secure-mode state and the open WPI session.

The session lives on the device row on purpose: every WPI message changes the session
(at least its round-trip count) and most change the inventory or the last address too,
so one row per phone keeps the device path at one row write per message.

This module lives under ``dls.devices`` rather than ``dls.provisioning`` because the
admin API reads and writes jobs and PINs, and ``dls.api`` never imports provisioning.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    false,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow
from dls.secretbox import SecretBox

__all__ = [
    "ACTIVE_JOB_STATES",
    "MAX_PIN_REFUSALS",
    "PIN_DIGITS",
    "PIN_LOOKUP_PURPOSE",
    "SECRET_MARKER",
    "DeploymentPin",
    "DeviceJob",
    "JobKind",
    "JobState",
    "KeyedHash",
    "WpiDevice",
    "keyed_hash",
    "new_pin",
    "pin_purpose",
    "rotate_pins",
]

PIN_DIGITS = 8  # typed on a phone keypad; attempts are limited per phone and per PIN
PIN_LOOKUP_PURPOSE = "deployment-pin"  # keyed-hash purpose of a PIN's look-up hash
MAX_PIN_REFUSALS = 5  # refused uses of one valid PIN (self-setup forbidden, phone taken)
# Stored in the inventory in place of a secret item's value, followed by its keyed hash.
SECRET_MARKER = "hmac:"  # noqa: S105 - a prefix, not a password


class JobKind(enum.StrEnum):
    """What a job asks of the phone; the values are the WPI engine's job kinds."""

    PUSH_CONFIG = "push-config"
    RESTART = "restart"
    FACTORY_RESET = "factory-reset"
    FILE_DEPLOYMENT = "file-deployment"
    SOFTWARE_DEPLOYMENT = "software-deployment"


class JobState(enum.StrEnum):
    PENDING = "pending"  # queued; the phone is to be contacted
    SENT = "sent"  # the command went out in a session; waiting for the phone's answer
    ACCEPTED = "accepted"
    FAILED = "failed"
    BUSY_RETRY = "busy-retry"  # the phone was in a call; it calls back when idle
    EXPIRED = "expired"  # not delivered before expires_at


# Jobs still on the phone's queue.
ACTIVE_JOB_STATES = (JobState.PENDING, JobState.SENT, JobState.BUSY_RETRY)


class DeviceJob(Base):
    __tablename__ = "device_jobs"
    __table_args__ = (
        Index("ix_device_jobs_device_state", "device_id", "state", "id"),
        Index("ix_device_jobs_state_updated", "state", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[JobKind] = mapped_column(enum_column(JobKind))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[JobState] = mapped_column(enum_column(JobState), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times the command was sent
    detail: Mapped[str | None] = mapped_column(String(255))  # why it failed, item names only
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # per-file deployment status
    created_by: Mapped[int | None] = mapped_column(Integer)  # user id; no FK: users may go
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class DeploymentPin(Base):
    """A user's self-setup PIN: ciphertext to show it again, keyed hash to look it up."""

    __tablename__ = "deployment_pins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    pin_ciphertext: Mapped[str] = mapped_column(String(200))
    lookup_hash: Mapped[str] = mapped_column(String(64), unique=True)
    line: Mapped[int] = mapped_column(SmallInteger, default=1)  # the user's line on the phone
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # refused uses of this PIN
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    used_by_mac: Mapped[str | None] = mapped_column(String(12))


class WpiDevice(Base):
    """One Unify phone as the device path knows it, bound to a tenant or not (yet)."""

    __tablename__ = "wpi_devices"

    mac: Mapped[str] = mapped_column(String(12), primary_key=True)  # 12 lower-case hex digits
    # The phone was last served as a managed device; false for unclaimed ones, so the
    # contact-me dispatcher can find phones assigned since their last contact.
    bound: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    inventory: Mapped[dict[str, str] | None] = mapped_column(JSON)  # None: never read
    last_address: Mapped[str | None] = mapped_column(String(64))  # source of its requests
    server_address: Mapped[str | None] = mapped_column(String(64))  # our address it reached
    contact_me_uri: Mapped[str | None] = mapped_column(String(255))
    last_contacted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    next_contact_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    contact_failures: Mapped[int] = mapped_column(Integer, default=0)
    secure_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    secure_refused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_failures_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    session_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    session_state: Mapped[str | None] = mapped_column(Text)  # SessionState.to_json()
    session_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Bumped by every write of the device path, which reads the row outside any lock and
    # writes it back only if this is still what it read (dls.provisioning.wpi.phone): two
    # messages of one phone, on two workers, cannot overwrite each other's session. An
    # admin's decision (secure-mode reset) bumps it too. The contact-me dispatcher and
    # the session housekeeping do not: they write fields a message overrides on purpose
    # (contact failures, expired sessions), and bumping would make every message in
    # flight start over.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


def pin_purpose(user_id: int) -> str:
    """Associated data of a PIN ciphertext: a ciphertext copied to another user won't open."""
    return f"deployment-pin:{user_id}"


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


class KeyedHash:
    """HMAC-SHA256 under a key derived from the secret key: look-ups without plaintext.

    A PIN has only 10^8 values, so an unkeyed hash would be reversed by trying them all;
    keyed, the table is useless without the key file. The same hash marks secret item
    values the phone holds (``sip-pwd``) without storing them.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def digest(self, purpose: str, value: str) -> str:
        message = purpose.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def keyed_hash(box: SecretBox) -> KeyedHash:
    """The keyed hash of this installation: every instance sharing the secret key agrees."""
    return KeyedHash(box.derive("keyed-hash"))


async def rotate_pins(session: AsyncSession, old: SecretBox, new: SecretBox) -> int:
    """Re-encrypt every deployment PIN and re-key its look-up hash (``dls secrets rotate-key``).

    Inventory hashes of secret items (``SECRET_MARKER``) are left as they are: under the new
    key they no longer match, so each phone gets its passwords written once more.
    """
    hasher = keyed_hash(new)
    count = 0
    for row in await session.scalars(select(DeploymentPin)):
        plain = old.decrypt(row.pin_ciphertext, pin_purpose(row.user_id))
        row.pin_ciphertext = new.encrypt(plain, pin_purpose(row.user_id))
        row.lookup_hash = hasher.digest(PIN_LOOKUP_PURPOSE, plain)
        count += 1
    return count
