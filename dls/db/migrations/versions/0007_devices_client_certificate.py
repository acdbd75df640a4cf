"""devices.client_certificate_*: the device-CA certificate issued to a phone

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("client_certificate_sha256", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("client_certificate_not_after", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("client_certificate_not_after")
        batch.drop_column("client_certificate_sha256")
