"""WPI device state and sessions, device jobs, deployment PINs, tenant secure mode

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:48:21.922484
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wpi_devices",
        sa.Column("mac", sa.String(length=12), nullable=False),
        sa.Column("bound", sa.Boolean(), nullable=False),
        sa.Column("inventory", sa.JSON(), nullable=True),
        sa.Column("last_address", sa.String(length=64), nullable=True),
        sa.Column("server_address", sa.String(length=64), nullable=True),
        sa.Column("contact_me_uri", sa.String(length=255), nullable=True),
        sa.Column("last_contacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contact_failures", sa.Integer(), nullable=False),
        sa.Column("secure_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("secure_refused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("pin_failures", sa.Integer(), nullable=False),
        sa.Column("pin_failures_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("session_token_hash", sa.String(length=64), nullable=True),
        sa.Column("session_state", sa.Text(), nullable=True),
        sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mac", name=op.f("pk_wpi_devices")),
        sa.UniqueConstraint("session_token_hash", name=op.f("uq_wpi_devices_session_token_hash")),
    )
    with op.batch_alter_table("wpi_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wpi_devices_bound"), ["bound"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_wpi_devices_session_expires_at"), ["session_expires_at"], unique=False
        )

    op.create_table(
        "deployment_pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=12), nullable=False),
        sa.Column("pin_ciphertext", sa.String(length=200), nullable=False),
        sa.Column("lookup_hash", sa.String(length=64), nullable=False),
        sa.Column("line", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_mac", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_deployment_pins_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_deployment_pins_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_pins")),
        sa.UniqueConstraint("lookup_hash", name=op.f("uq_deployment_pins_lookup_hash")),
        sa.UniqueConstraint("user_id", name=op.f("uq_deployment_pins_user_id")),
    )
    with op.batch_alter_table("deployment_pins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deployment_pins_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "device_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "push-config",
                "restart",
                "factory-reset",
                "file-deployment",
                "software-deployment",
                name="jobkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "sent",
                "accepted",
                "failed",
                "busy-retry",
                "expired",
                name="jobstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_jobs_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_jobs")),
    )
    with op.batch_alter_table("device_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_jobs_device_state", ["device_id", "state", "id"], unique=False
        )
        batch_op.create_index("ix_device_jobs_state_updated", ["state", "updated_at"], unique=False)

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "wpi_secure_mode",
                sa.Enum(
                    "off",
                    "bootstrap",
                    "required",
                    name="wpisecuremode",
                    native_enum=False,
                    length=32,
                ),
                server_default="bootstrap",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("wpi_secure_mode")

    with op.batch_alter_table("device_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_device_jobs_state_updated")
        batch_op.drop_index("ix_device_jobs_device_state")

    op.drop_table("device_jobs")
    with op.batch_alter_table("deployment_pins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployment_pins_tenant_id"))

    op.drop_table("deployment_pins")
    with op.batch_alter_table("wpi_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wpi_devices_session_expires_at"))
        batch_op.drop_index(batch_op.f("ix_wpi_devices_bound"))

    op.drop_table("wpi_devices")
