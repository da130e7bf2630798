from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow

CAMPAIGN_STATES = ("running", "finished")


class Campaign(db.Model):
    """A kit for every employer of a CDG that had none: one job per employer (`Job.campaign_id`);
    progress is counted from those jobs."""

    __tablename__ = "campaign"
    __table_args__ = (
        # one running campaign per CDG, whatever the race between two starts
        Index(
            "uq_campaign_running",
            "cdg_code",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cdg_code: Mapped[str] = mapped_column(String(8), index=True)
    status: Mapped[str] = mapped_column(String(12), default="running")
    total: Mapped[int] = mapped_column(default=0)
    started_by: Mapped[str] = mapped_column(String(254))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
