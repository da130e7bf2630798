"""Agents: memberships, agents' accounts, activation links, beneficiary designations; the
convention's regime; agent tokens and sessions

Revision ID: 0012_agents
Revises: 0011_campaigns
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_agents"
down_revision = "0011_campaigns"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("convention") as batch:
        batch.add_column(
            sa.Column("regime", sa.String(length=12), nullable=False, server_default="facultative")
        )
    op.create_table(
        "agent_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("activated_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_account")),
        sa.UniqueConstraint("email", name=op.f("uq_agent_account_email")),
    )
    op.create_table(
        "membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=40), nullable=False),
        sa.Column("employer_id", sa.Integer(), nullable=False),
        sa.Column("convention_id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("person_key", sa.String(length=240), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=1), nullable=False),
        sa.Column("paid_by_hour_or_day", sa.Boolean(), nullable=False),
        sa.Column("in_normal_service", sa.Boolean(), nullable=False),
        sa.Column("on_sick_leave", sa.Boolean(), nullable=False),
        sa.Column("returned_on", sa.Date(), nullable=True),
        sa.Column("previous_collective_contract", sa.Boolean(), nullable=False),
        sa.Column("has_individual_contract", sa.Boolean(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("joins_on", sa.Date(), nullable=False),
        sa.Column("base_amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("premium", sa.Numeric(12, 2), nullable=False),
        sa.Column("employer_contribution", sa.Numeric(12, 2), nullable=False),
        sa.Column("employee_share", sa.Numeric(12, 2), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.Column("leave_reason", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["employer_id"], ["employer.id"], name=op.f("fk_membership_employer_id_employer")
        ),
        sa.ForeignKeyConstraint(
            ["convention_id"],
            ["convention.id"],
            name=op.f("fk_membership_convention_id_convention"),
        ),
        sa.ForeignKeyConstraint(["kit_id"], ["kit.id"], name=op.f("fk_membership_kit_id_kit")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["agent_account.id"],
            name=op.f("fk_membership_account_id_agent_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership")),
        sa.UniqueConstraint("reference", name=op.f("uq_membership_reference")),
    )
    op.create_index(op.f("ix_membership_employer_id"), "membership", ["employer_id"])
    op.create_index(op.f("ix_membership_convention_id"), "membership", ["convention_id"])
    op.create_index(op.f("ix_membership_account_id"), "membership", ["account_id"])
    op.create_index(op.f("ix_membership_email"), "membership", ["email"])
    op.create_index(op.f("ix_membership_state"), "membership", ["state"])
    op.create_index(
        "uq_membership_person_open",
        "membership",
        ["employer_id", "person_key"],
        unique=True,
        postgresql_where=sa.text("state <> 'left'"),
        sqlite_where=sa.text("state <> 'left'"),
    )
    op.create_table(
        "activation_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["membership.id"],
            name=op.f("fk_activation_link_membership_id_membership"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_link")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_activation_link_token_hash")),
    )
    op.create_index(op.f("ix_activation_link_membership_id"), "activation_link", ["membership_id"])
    op.create_table(
        "beneficiary_designation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("clause", sa.String(length=12), nullable=False),
        sa.Column("beneficiaries", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["membership.id"],
            name=op.f("fk_beneficiary_designation_membership_id_membership"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beneficiary_designation")),
    )
    op.create_index(
        op.f("ix_beneficiary_designation_membership_id"),
        "beneficiary_designation",
        ["membership_id"],
    )
    for name in ("api_token", "web_session"):
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("agent_account_id", sa.Integer(), nullable=True))
            batch.create_index(f"ix_{name}_agent_account_id", ["agent_account_id"])
            batch.create_foreign_key(
                f"fk_{name}_agent_account_id_agent_account",
                "agent_account",
                ["agent_account_id"],
                ["id"],
                ondelete="CASCADE",
            )


def downgrade():
    for name in ("web_session", "api_token"):
        with op.batch_alter_table(name) as batch:
            batch.drop_constraint(f"fk_{name}_agent_account_id_agent_account", type_="foreignkey")
            batch.drop_index(f"ix_{name}_agent_account_id")
            batch.drop_column("agent_account_id")
    op.drop_table("beneficiary_designation")
    op.drop_table("activation_link")
    op.drop_index("uq_membership_person_open", table_name="membership")
    op.drop_table("membership")
    op.drop_table("agent_account")
    # a plain ALTER TABLE … DROP COLUMN: recreating `convention` would trip the foreign keys of
    # the employers that reference it (SQLite ≥ 3.35 drops a column in place)
    with op.batch_alter_table("convention", recreate="never") as batch:
        batch.drop_column("regime")
