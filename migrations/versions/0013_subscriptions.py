"""Subscription requests (DSC) and employers' prerequisites

Revision ID: 0013_subscriptions
Revises: 0012_agents
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_subscriptions"
down_revision = "0012_agents"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "subscription_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cdg_id", sa.Integer(), nullable=False),
        sa.Column("siret", sa.String(length=14), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("contact_name", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_expires_at", sa.DateTime(), nullable=False),
        sa.Column("submitted_from", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("decision_reason", sa.String(length=1000), nullable=True),
        sa.Column("employer_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cdg_id"], ["cdg.id"], name=op.f("fk_subscription_request_cdg_id_cdg")
        ),
        sa.ForeignKeyConstraint(
            ["employer_id"],
            ["employer.id"],
            name=op.f("fk_subscription_request_employer_id_employer"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_request")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_subscription_request_token_hash")),
    )
    with op.batch_alter_table("subscription_request") as batch:
        batch.create_index(batch.f("ix_subscription_request_cdg_id"), ["cdg_id"])
        batch.create_index(batch.f("ix_subscription_request_siret"), ["siret"])
        batch.create_index(batch.f("ix_subscription_request_contact_email"), ["contact_email"])
        batch.create_index(batch.f("ix_subscription_request_status"), ["status"])
        batch.create_index(batch.f("ix_subscription_request_employer_id"), ["employer_id"])
    op.create_table(
        "prerequisite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("storage_key", sa.String(length=400), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by", sa.String(length=254), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["employer_id"], ["employer.id"], name=op.f("fk_prerequisite_employer_id_employer")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscription_request.id"],
            name=op.f("fk_prerequisite_subscription_id_subscription_request"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prerequisite")),
        sa.UniqueConstraint("employer_id", "kind", name=op.f("uq_prerequisite_employer_id")),
    )
    with op.batch_alter_table("prerequisite") as batch:
        batch.create_index(batch.f("ix_prerequisite_employer_id"), ["employer_id"])


def downgrade():
    with op.batch_alter_table("prerequisite") as batch:
        batch.drop_index(batch.f("ix_prerequisite_employer_id"))
    op.drop_table("prerequisite")
    with op.batch_alter_table("subscription_request") as batch:
        for column in ("employer_id", "status", "contact_email", "siret", "cdg_id"):
            batch.drop_index(batch.f(f"ix_subscription_request_{column}"))
    op.drop_table("subscription_request")
