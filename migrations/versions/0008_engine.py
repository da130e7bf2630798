"""The background engine: the outbox of jobs, campaigns, workers' heartbeats

Revision ID: 0008_engine
Revises: h7
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_engine"
down_revision = "h7"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cdg_code", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("started_by", sa.String(length=254), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
    )
    op.create_index(op.f("ix_campaign_cdg_code"), "campaign", ["cdg_code"])
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=80), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("kit_id", sa.Integer(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["kit_id"], ["kit.id"], name=op.f("fk_job_kit_id_kit")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_job_campaign_id_campaign")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    op.create_index("ix_job_status_next", "job", ["status", "next_attempt_at"])
    op.create_index("ix_job_campaign_status", "job", ["campaign_id", "status"])
    op.create_index(op.f("ix_job_kit_id"), "job", ["kit_id"])
    op.create_table(
        "worker_heartbeat",
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hostname", name=op.f("pk_worker_heartbeat")),
    )


def downgrade():
    op.drop_table("worker_heartbeat")
    op.drop_index(op.f("ix_job_kit_id"), table_name="job")
    op.drop_index("ix_job_campaign_status", table_name="job")
    op.drop_index("ix_job_status_next", table_name="job")
    op.drop_table("job")
    op.drop_index(op.f("ix_campaign_cdg_code"), table_name="campaign")
    op.drop_table("campaign")
