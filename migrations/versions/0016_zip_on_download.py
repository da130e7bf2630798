"""A kit keeps its day of issue: its ZIP is made again at each download from its stored files,
its entries dated that day (new kits store no ZIP object: their `zip_key` is empty)

Revision ID: 0016_zip_on_download
Revises: 0015_prerequisite_history
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_zip_on_download"
down_revision = "0015_prerequisite_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kit", sa.Column("issued_on", sa.Date(), nullable=True))


def downgrade() -> None:
    # the kits issued since have no ZIP object (`zip_key` empty): the code of 0015 cannot serve
    # their ZIP; the code of 0016 on, back up, dates it from `issued_at` again
    op.drop_column("kit", "issued_on")
