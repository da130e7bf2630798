from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.kits.models import Kit
from service.timeutil import utcnow

RETURN_STATES = ("accepted", "pending_review", "refused")


class KitReturn(db.Model):
    """One uploaded signed piece. Refused uploads are kept too (quarantined, never served)."""

    __tablename__ = "kit_return"

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    refusal_code: Mapped[str | None] = mapped_column(String(60))
    refusal_message: Mapped[str | None] = mapped_column(String(500))
    storage_key: Mapped[str] = mapped_column(String(300))
    quarantined: Mapped[bool] = mapped_column(default=False)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    verification: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uploaded_by: Mapped[str] = mapped_column(String(254))
    uploaded_from: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(254))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(String(1000))
    countersigned_key: Mapped[str | None] = mapped_column(String(300))
    countersigned_sha256: Mapped[str | None] = mapped_column(String(64))
    countersigned_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    kit: Mapped[Kit] = relationship()

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}
