"""firmware images, targets and rollouts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:04:39.469305
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "firmware_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("version_key", sa.String(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column(
            "checksum_source",
            sa.Enum("catalog", "operator", name="checksumsource", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("imported_by", sa.Integer(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_images")),
        sa.UniqueConstraint(
            "vendor",
            "version_key",
            "sha256",
            name=op.f("uq_firmware_images_vendor_version_key_sha256"),
        ),
    )
    with op.batch_alter_table("firmware_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_images_sha256"), ["sha256"], unique=False)

    op.create_table(
        "firmware_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("system", "tenant", "group", name="targetscope", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("scope_key", sa.String(length=32), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("version_key", sa.String(length=64), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_targets")),
        sa.UniqueConstraint(
            "vendor",
            "model_key",
            "scope",
            "scope_key",
            name=op.f("uq_firmware_targets_vendor_model_key_scope_scope_key"),
        ),
    )
    op.create_table(
        "firmware_image_models",
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("version_key", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["firmware_images.id"],
            name=op.f("fk_firmware_image_models_image_id_firmware_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "vendor", "model_key", "version_key", name=op.f("pk_firmware_image_models")
        ),
    )
    with op.batch_alter_table("firmware_image_models", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_image_models_image_id"), ["image_id"], unique=False
        )

    op.create_table(
        "firmware_rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=12), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("tenant_ids", sa.JSON(), nullable=True),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "paused",
                "halted",
                "completed",
                "aborted",
                name="rolloutstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("failure_threshold_percent", sa.Integer(), nullable=False),
        sa.Column("wave_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("soak_seconds", sa.Integer(), nullable=False),
        sa.Column("window", sa.JSON(), nullable=True),
        sa.Column("accepted_failures", sa.Integer(), nullable=False),
        sa.Column("halted_reason", sa.String(length=255), nullable=True),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_firmware_rollouts_group_id_device_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_firmware_rollouts_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollouts")),
    )
    with op.batch_alter_table("firmware_rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firmware_rollouts_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_firmware_rollouts_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "firmware_rollout_devices",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("version_key", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("reported_version", sa.String(length=64), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "offered",
                "downloading",
                "installed",
                "failed",
                name="devicestate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("download_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_firmware_rollout_devices_device_id_devices"),
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["firmware_rollouts.id"],
            name=op.f("fk_firmware_rollout_devices_rollout_id_firmware_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "rollout_id", "device_id", name=op.f("pk_firmware_rollout_devices")
        ),
    )
    with op.batch_alter_table("firmware_rollout_devices", schema=None) as batch_op:
        batch_op.create_index("ix_firmware_rollout_devices_device", ["device_id"], unique=False)
        batch_op.create_index(
            "ix_firmware_rollout_devices_progress", ["rollout_id", "wave", "state"], unique=False
        )

    op.create_table(
        "firmware_rollout_waves",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "active", "done", name="wavestatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["firmware_rollouts.id"],
            name=op.f("fk_firmware_rollout_waves_rollout_id_firmware_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "wave", name=op.f("pk_firmware_rollout_waves")),
    )


def downgrade() -> None:
    op.drop_table("firmware_rollout_waves")
    with op.batch_alter_table("firmware_rollout_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_firmware_rollout_devices_progress")
        batch_op.drop_index("ix_firmware_rollout_devices_device")

    op.drop_table("firmware_rollout_devices")
    with op.batch_alter_table("firmware_rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_rollouts_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_firmware_rollouts_status"))

    op.drop_table("firmware_rollouts")
    with op.batch_alter_table("firmware_image_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_image_models_image_id"))

    op.drop_table("firmware_image_models")
    op.drop_table("firmware_targets")
    with op.batch_alter_table("firmware_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_images_sha256"))

    op.drop_table("firmware_images")
