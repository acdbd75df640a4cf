"""Tenants, users, tokens, audit log and tickets; the audit log refuses UPDATE and DELETE.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 01:33:52.615949
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_tenant_id", sa.String(length=12), nullable=True),
        sa.Column("target_tenant_id", sa.String(length=12), nullable=True),
        sa.Column(
            "via",
            sa.Enum("direct", "partner", "operator", name="via", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_entries_actor_tenant", ["actor_tenant_id", "id"], unique=False
        )
        batch_op.create_index("ix_audit_entries_target", ["target_tenant_id", "id"], unique=False)

    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_login_failures_address_at", ["address", "at"], unique=False)
        batch_op.create_index("ix_login_failures_username_at", ["username", "at"], unique=False)

    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(length=12), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "operator",
                "distributor",
                "reseller",
                "customer",
                name="tenantkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("eu", sa.Boolean(), nullable=False),
        sa.Column("distributor_partner_id", sa.String(length=32), nullable=True),
        sa.Column("reseller_partner_id", sa.String(length=32), nullable=True),
        sa.Column("partner_admin_id", sa.String(length=32), nullable=True),
        sa.Column("reseller_enabled", sa.Boolean(), nullable=False),
        sa.Column("partner_access", sa.Boolean(), nullable=False),
        sa.Column("partner_access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("self_setup_allowed", sa.Boolean(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("order_id", name=op.f("uq_tenants_order_id")),
        sa.UniqueConstraint("partner_admin_id", name=op.f("uq_tenants_partner_admin_id")),
    )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tenants_distributor_partner_id"),
            ["distributor_partner_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_tenants_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tenants_reseller_partner_id"), ["reseller_partner_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=12), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "user",
                "tenant_admin",
                "partner_admin",
                "operator",
                name="role",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("self_setup_override", sa.Boolean(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_users_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "access_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("session", "api", name="tokenkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_access_tokens_token_hash")),
    )
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "dpas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("from_tenant_id", sa.String(length=12), nullable=False),
        sa.Column("to_tenant_id", sa.String(length=12), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("document_ref", sa.String(length=200), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["from_tenant_id"], ["tenants.tenant_id"], name=op.f("fk_dpas_from_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["users.id"], name=op.f("fk_dpas_recorded_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["to_tenant_id"], ["tenants.tenant_id"], name=op.f("fk_dpas_to_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dpas")),
        sa.UniqueConstraint(
            "from_tenant_id",
            "to_tenant_id",
            "signed_on",
            name=op.f("uq_dpas_from_tenant_id_to_tenant_id_signed_on"),
        ),
    )
    with op.batch_alter_table("dpas", schema=None) as batch_op:
        batch_op.create_index("ix_dpas_pair", ["from_tenant_id", "to_tenant_id"], unique=False)

    op.create_table(
        "partner_access_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=12), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_by", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["changed_by"], ["users.id"], name=op.f("fk_partner_access_changes_changed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_partner_access_changes_tenant_id_tenants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_access_changes")),
    )
    with op.batch_alter_table("partner_access_changes", schema=None) as batch_op:
        batch_op.create_index("ix_partner_access_changes_tenant", ["tenant_id", "id"], unique=False)

    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=10), nullable=False),
        sa.Column("customer_tenant_id", sa.String(length=12), nullable=False),
        sa.Column("partner_account_id", sa.String(length=12), nullable=True),
        sa.Column(
            "addressed_to",
            sa.Enum("reseller", "operator", name="addressee", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("support_level", sa.SmallInteger(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "in_progress",
                "pending",
                "resolved",
                "closed",
                name="ticketstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("submitter_id", sa.Integer(), nullable=False),
        sa.Column("requester", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_tenant_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_tickets_customer_tenant_id_tenants"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_account_id"],
            ["tenants.tenant_id"],
            name=op.f("fk_tickets_partner_account_id_tenants"),
        ),
        sa.ForeignKeyConstraint(
            ["submitter_id"], ["users.id"], name=op.f("fk_tickets_submitter_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("number", name=op.f("uq_tickets_number")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_customer", ["customer_tenant_id", "id"], unique=False)
        batch_op.create_index("ix_tickets_partner", ["partner_account_id", "id"], unique=False)

    op.create_table(
        "ticket_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.String(length=200), nullable=True),
        sa.Column("new_value", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_ticket_changes_actor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_changes_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_changes")),
    )
    with op.batch_alter_table("ticket_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_changes_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "ticket_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_ticket_comments_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_comments_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_comments")),
    )
    with op.batch_alter_table("ticket_comments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_comments_ticket_id"), ["ticket_id"], unique=False
        )

    # The audit log is append-only for everyone, the application's own role included.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_entries_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_entries is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries"
            " FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()"
        )
        # Row triggers do not fire on TRUNCATE; a statement trigger does.
        op.execute(
            "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entries_no_{event.lower()} BEFORE {event} ON audit_entries"
                " BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entries_no_truncate ON audit_entries")
        op.execute("DROP TRIGGER audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION audit_entries_append_only()")
    with op.batch_alter_table("ticket_comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_comments_ticket_id"))

    op.drop_table("ticket_comments")
    with op.batch_alter_table("ticket_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_changes_ticket_id"))

    op.drop_table("ticket_changes")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_partner")
        batch_op.drop_index("ix_tickets_customer")

    op.drop_table("tickets")
    with op.batch_alter_table("partner_access_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_partner_access_changes_tenant")

    op.drop_table("partner_access_changes")
    with op.batch_alter_table("dpas", schema=None) as batch_op:
        batch_op.drop_index("ix_dpas_pair")

    op.drop_table("dpas")
    with op.batch_alter_table("access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_tokens_user_id"))

    op.drop_table("access_tokens")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_tenant_id"))

    op.drop_table("users")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenants_reseller_partner_id"))
        batch_op.drop_index(batch_op.f("ix_tenants_name"))
        batch_op.drop_index(batch_op.f("ix_tenants_distributor_partner_id"))

    op.drop_table("tenants")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_username_at")
        batch_op.drop_index("ix_login_failures_address_at")

    op.drop_table("login_failures")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entries_target")
        batch_op.drop_index("ix_audit_entries_actor_tenant")

    op.drop_table("audit_entries")
