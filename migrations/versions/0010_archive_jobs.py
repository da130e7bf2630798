"""Archive copies become engine jobs: pending and failed archive_job rows move into job

Revision ID: 0010_archive_jobs
Revises: 0008_engine
Create Date: 2026-11-22
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0010_archive_jobs"
down_revision = "0008_engine"
branch_labels = None
depends_on = None

COPY_TASK = "psc.archive.copy"
MANIFEST = "manifest"
MAX_ATTEMPTS = 30

archive_job = sa.table(
    "archive_job",
    sa.column("id", sa.Integer),
    sa.column("kit_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("last_error", sa.String),
    sa.column("next_attempt_at", sa.DateTime),
    sa.column("payload", sa.JSON),
    sa.column("created_at", sa.DateTime),
    sa.column("done_at", sa.DateTime),
)
job = sa.table(
    "job",
    sa.column("id", sa.Integer),
    sa.column("task", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("max_attempts", sa.Integer),
    sa.column("last_error", sa.String),
    sa.column("kit_id", sa.Integer),
    sa.column("created_at", sa.DateTime),
    sa.column("enqueued_at", sa.DateTime),
    sa.column("next_attempt_at", sa.DateTime),
    sa.column("done_at", sa.DateTime),
)


def upgrade():
    conn = op.get_bind()
    rows = conn.execute(sa.select(archive_job).order_by(archive_job.c.id)).mappings().all()
    pieces: dict[int, list[str]] = {}
    manifests: dict[int, dict] = {}
    for row in rows:
        if row["kind"] == MANIFEST:
            manifests[row["kit_id"]] = dict(row["payload"] or {})
        else:
            pieces.setdefault(row["kit_id"], []).append(row["kind"])
    moved = []
    for row in rows:
        if row["status"] not in ("pending", "failed"):
            continue
        kit_pieces = pieces.get(row["kit_id"], [])
        manifest = manifests.get(row["kit_id"], {})
        if row["kind"] == MANIFEST:
            payload = {"kind": MANIFEST, "pieces": kit_pieces, **manifest}
        else:
            payload = {"kind": row["kind"], "pieces": kit_pieces, "manifest": manifest}
        moved.append(
            {
                "task": COPY_TASK,
                "payload": payload,
                "status": row["status"],
                "attempts": row["attempts"],
                "max_attempts": max(MAX_ATTEMPTS, row["attempts"] + 1),
                "last_error": row["last_error"],
                "kit_id": row["kit_id"],
                "created_at": row["created_at"],
                # never handed to the new broker: beat's sweep sends them
                "enqueued_at": None,
                "next_attempt_at": row["next_attempt_at"],
                "done_at": None,
            }
        )
    if moved:
        op.bulk_insert(job, moved)
    with op.batch_alter_table("archive_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archive_job_status"))
        batch_op.drop_index(batch_op.f("ix_archive_job_kit_id"))
    op.drop_table("archive_job")


def downgrade():
    op.create_table(
        "archive_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kit_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["kit_id"], ["kit.id"], name=op.f("fk_archive_job_kit_id_kit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_job")),
        sa.UniqueConstraint("kit_id", "kind", name=op.f("uq_archive_job_kit_id")),
    )
    with op.batch_alter_table("archive_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_archive_job_kit_id"), ["kit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_archive_job_status"), ["status"], unique=False)
    conn = op.get_bind()
    rows = (
        conn.execute(
            sa.select(job)
            .where(job.c.task == COPY_TASK, job.c.status.in_(("pending", "failed")))
            .order_by(job.c.id)
        )
        .mappings()
        .all()
    )
    back, seen = [], set()
    for row in rows:
        payload = dict(row["payload"] or {})
        kind = payload.get("kind")
        if not kind or (row["kit_id"], kind) in seen:
            continue
        seen.add((row["kit_id"], kind))
        frozen = (
            {k: payload.get(k) for k in ("audit_last_hash", "countersigned_at")}
            if kind == MANIFEST
            else {}
        )
        back.append(
            {
                "kit_id": row["kit_id"],
                "kind": kind,
                "status": row["status"],
                "attempts": row["attempts"],
                "last_error": row["last_error"],
                "next_attempt_at": row["next_attempt_at"] or datetime.utcnow(),
                "payload": frozen,
                "created_at": row["created_at"],
                "done_at": None,
            }
        )
    # a kit whose pieces wait had no manifest job yet (written after its pieces): add it
    for row in list(back):
        if row["kind"] != MANIFEST and (row["kit_id"], MANIFEST) not in seen:
            seen.add((row["kit_id"], MANIFEST))
            frozen = next(
                dict(r["payload"] or {}).get("manifest") or {}
                for r in rows
                if r["kit_id"] == row["kit_id"]
            )
            back.append(
                {
                    **row,
                    "kind": MANIFEST,
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "payload": frozen,
                }
            )
    if back:
        op.bulk_insert(archive_job, back)
    conn.execute(sa.delete(job).where(job.c.task == COPY_TASK))
