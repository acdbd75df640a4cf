"""provisioning_ledger.at index: retention deletes the oldest rows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:00:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioning_ledger") as batch:
        batch.create_index("ix_provisioning_ledger_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("provisioning_ledger") as batch:
        batch.drop_index("ix_provisioning_ledger_at")
