"""devices.last_refused_*: the last request that named a device and did not prove it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("last_refused_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_refused_reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("last_refused_address", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_refused_address")
        batch.drop_column("last_refused_reason")
        batch.drop_column("last_refused_at")
