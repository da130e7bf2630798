from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow


class BatchRun(db.Model):
    """A CDG-wide kit issuing started from the pages; runs in the background, polled by them."""

    __tablename__ = "batch_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    cdg_code: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), default="running")
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_by: Mapped[str] = mapped_column(String(254))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
