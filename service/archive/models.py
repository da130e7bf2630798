from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.kits.models import Kit
from service.timeutil import utcnow


class ArchiveJob(db.Model):
    """One copy to archive (a countersigned piece, or the kit's manifest): an outbox row,
    written in the countersigning transaction and worked until done."""

    __tablename__ = "archive_job"
    __table_args__ = (UniqueConstraint("kit_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # a piece kind, or "manifest"
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]

    kit: Mapped[Kit] = relationship()


class ArchiveRecord(db.Model):
    """An archived object, stored and checksum-verified."""

    __tablename__ = "archive_record"
    __table_args__ = (Index("ix_archive_record_cdg_id", "cdg_code", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), index=True)
    cdg_code: Mapped[str] = mapped_column(String(8))
    siret: Mapped[str] = mapped_column(String(14), index=True)
    kit_reference: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(400), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    signers: Mapped[list[str]] = mapped_column(JSON, default=list)
    retain_until: Mapped[datetime | None]
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)
