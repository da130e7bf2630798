from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow


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
