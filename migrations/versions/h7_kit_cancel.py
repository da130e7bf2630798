"""Kit cancellation: when, by whom and why an open kit was voided

Revision ID: h7
Revises: 0005
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "h7"
down_revision = "0007_sessions"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("kit") as batch:
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("cancelled_by", sa.String(length=254), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.String(length=1000), nullable=True))


def downgrade():
    with op.batch_alter_table("kit") as batch:
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_by")
        batch.drop_column("cancelled_at")
