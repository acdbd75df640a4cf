"""wpi_devices.version: compare-and-set for the device path's writes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 08:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wpi_devices") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("wpi_devices") as batch:
        batch.drop_column("version")
