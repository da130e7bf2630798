"""Signing in the browser: the collectivité's signatory and one-time signing requests

Revision ID: 0014_browser_signing
Revises: 0013_subscriptions
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_browser_signing"
down_revision = "0013_subscriptions"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "esign_signatory",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("named_by", sa.String(length=254), nullable=False),
        sa.Column("named_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["kit_id"], ["kit.id"], name=op.f("fk_esign_signatory_kit_id_kit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_esign_signatory")),
        sa.UniqueConstraint("kit_id", name=op.f("uq_esign_signatory_kit_id")),
    )
    op.create_table(
        "esign_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("signatory_name", sa.String(length=120), nullable=False),
        sa.Column("signatory_title", sa.String(length=80), nullable=False),
        sa.Column("signatory_email", sa.String(length=254), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("mail_job_id", sa.Integer(), nullable=True),
        sa.Column("requested_from", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("return_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["kit_id"], ["kit.id"], name=op.f("fk_esign_request_kit_id_kit")),
        sa.ForeignKeyConstraint(
            ["return_id"], ["kit_return.id"], name=op.f("fk_esign_request_return_id_kit_return")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_esign_request")),
    )
    op.create_index(op.f("ix_esign_request_kit_id"), "esign_request", ["kit_id"])


def downgrade():
    op.drop_index(op.f("ix_esign_request_kit_id"), table_name="esign_request")
    op.drop_table("esign_request")
    op.drop_table("esign_signatory")
