"""Prerequisites keep their history: several papers of a kind per employer, the newest in force

Revision ID: 0015_prerequisite_history
Revises: 0014_browser_signing
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_prerequisite_history"
down_revision = "0014_browser_signing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prerequisite") as batch:
        batch.drop_constraint(batch.f("uq_prerequisite_employer_id"), type_="unique")
        batch.create_index(batch.f("ix_prerequisite_employer_id_kind"), ["employer_id", "kind"])


def downgrade() -> None:
    # one row per kind again: the paper in force (the newest) is kept, its history dropped
    op.execute(
        sa.text(
            "DELETE FROM prerequisite WHERE id NOT IN (SELECT MAX(id) FROM prerequisite "
            "GROUP BY employer_id, kind)"
        )
    )
    with op.batch_alter_table("prerequisite") as batch:
        batch.drop_index(batch.f("ix_prerequisite_employer_id_kind"))
        batch.create_unique_constraint(
            batch.f("uq_prerequisite_employer_id"), ["employer_id", "kind"]
        )
