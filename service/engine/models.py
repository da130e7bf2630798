"""The outbox: one row per side effect, written in the transaction that decides it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow

#: a job waits (`pending`) until a task claims and finishes it (`done`), or gives up (`failed`,
#: retriable by staff)
JOB_STATES = ("pending", "done", "failed")


class Job(db.Model):
    """A side effect to carry out after a commit (an e-mail, an archive copy, a campaign's kit).

    The row is written in the same transaction as the decision; the Celery task named `task` is
    enqueued after the commit with the row's id, claims the row, does the work and marks it done
    in one transaction. A lost message is sent again by beat's sweep; a duplicated one finds the
    row done and does nothing.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_status_next", "status", "next_attempt_at"),
        Index("ix_job_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=8)
    last_error: Mapped[str | None] = mapped_column(String(500))
    kit_id: Mapped[int | None] = mapped_column(ForeignKey("kit.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: when the task was last handed to the broker (None: never, or the broker was down)
    enqueued_at: Mapped[datetime | None]
    #: not before this time (retries with backoff)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class WorkerHeartbeat(db.Model):
    """A Celery worker that answers: written by each worker every few seconds."""

    __tablename__ = "worker_heartbeat"

    hostname: Mapped[str] = mapped_column(String(200), primary_key=True)
    pid: Mapped[int]
    concurrency: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
