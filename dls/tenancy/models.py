"""Tenants and users, and the records behind the "on behalf of" rule."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from dls.db.base import Base
from dls.db.types import UtcDateTime, enum_column, utcnow

__all__ = ["Dpa", "PartnerAccessChange", "Role", "Tenant", "TenantKind", "User", "WpiSecureMode"]


class TenantKind(enum.StrEnum):
    OPERATOR = "operator"
    DISTRIBUTOR = "distributor"
    RESELLER = "reseller"
    CUSTOMER = "customer"


class Role(enum.StrEnum):
    USER = "user"
    TENANT_ADMIN = "tenant_admin"
    PARTNER_ADMIN = "partner_admin"
    OPERATOR = "operator"


class WpiSecureMode(enum.StrEnum):
    """Whether the tenant's Unify phones are moved to WPI secure mode (mutual TLS on 18444)."""

    OFF = "off"  # never: SIP passwords go out in default mode
    BOOTSTRAP = "bootstrap"  # once bound; a phone that refuses stays in default mode
    REQUIRED = "required"  # once bound; no SIP or admin password before it is secure


class Tenant(Base):
    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    kind: Mapped[TenantKind] = mapped_column(enum_column(TenantKind))
    name: Mapped[str] = mapped_column(String(200), index=True)
    country: Mapped[str] = mapped_column(String(2))
    eu: Mapped[bool] = mapped_column(Boolean, default=False)
    # Customers: Global One IDs of their distributor and reseller, normally set by orders.
    distributor_partner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    reseller_partner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Resellers (and distributors acting as one): the ID customers' reseller IDs must equal.
    partner_admin_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    reseller_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Customer's partner-administration switch; the history is in partner_access_changes.
    partner_access: Mapped[bool] = mapped_column(Boolean, default=False)
    partner_access_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    self_setup_allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    # Legacy "MAC only" device trust: off by default, shown as a warning on the tenant.
    legacy_mac_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    wpi_secure_mode: Mapped[WpiSecureMode] = mapped_column(
        enum_column(WpiSecureMode),
        default=WpiSecureMode.BOOTSTRAP,
        server_default=WpiSecureMode.BOOTSTRAP.value,
    )
    order_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"), index=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.USER)
    paid: Mapped[bool] = mapped_column(Boolean, default=False)
    self_setup_override: Mapped[bool | None] = mapped_column(Boolean)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class PartnerAccessChange(Base):
    """One switch of a customer's partner administration; rows are never updated."""

    __tablename__ = "partner_access_changes"
    __table_args__ = (Index("ix_partner_access_changes_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    enabled: Mapped[bool] = mapped_column(Boolean)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    changed_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Dpa(Base):
    """A data processing agreement from one tenant to another (GDPR Art. 28)."""

    __tablename__ = "dpas"
    __table_args__ = (
        UniqueConstraint("from_tenant_id", "to_tenant_id", "signed_on"),
        Index("ix_dpas_pair", "from_tenant_id", "to_tenant_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    to_tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.tenant_id"))
    signed_on: Mapped[dt.date] = mapped_column(Date)
    document_ref: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
