"""The contract text: insurer's legal identification, signatory's title, start of cover

Revision ID: 0006_contract
Revises: 0005
Create Date: 2026-11-22

The convention states the insurer's legal form, capital, register and head office; the employer
may record whether its signatory is a woman or a man (« la présidente »); a kit stores its start
of cover so that the documents, the e-mails and the API show one date.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_contract"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("convention") as batch:
        batch.add_column(sa.Column("insurer_legal_form", sa.String(120), nullable=True))
        batch.add_column(sa.Column("insurer_capital", sa.Numeric(16, 2), nullable=True))
        batch.add_column(sa.Column("insurer_register", sa.String(120), nullable=True))
        batch.add_column(sa.Column("insurer_address", sa.String(300), nullable=True))
    with op.batch_alter_table("employer") as batch:
        batch.add_column(sa.Column("signatory_gender", sa.String(1), nullable=True))
    with op.batch_alter_table("kit") as batch:
        batch.add_column(sa.Column("cover_starts_on", sa.Date(), nullable=True))


def downgrade():
    with op.batch_alter_table("kit") as batch:
        batch.drop_column("cover_starts_on")
    with op.batch_alter_table("employer") as batch:
        batch.drop_column("signatory_gender")
    with op.batch_alter_table("convention") as batch:
        for name in ("insurer_address", "insurer_register", "insurer_capital", "insurer_legal_form"):
            batch.drop_column(name)
