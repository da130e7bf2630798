"""Campaigns replace the pages' batch runs: one running campaign per CDG

Revision ID: 0011_campaigns
Revises: 0010_archive_jobs
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_campaigns"
down_revision = "0010_archive_jobs"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_table("batch_run")
    op.create_index(
        "uq_campaign_running",
        "campaign",
        ["cdg_code"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )


def downgrade():
    op.drop_index("uq_campaign_running", table_name="campaign")
    op.create_table(
        "batch_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cdg_code", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("started_by", sa.String(length=254), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_run")),
    )
