from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow


class AuditEvent(db.Model):
    """Append-only; `hash` = SHA-256 over the previous event's hash and this event's fields."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int | None] = mapped_column(ForeignKey("kit.id"), index=True)
    siret: Mapped[str | None] = mapped_column(String(14), index=True)
    event: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(254))
    address: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    sha256_before: Mapped[str | None] = mapped_column(String(64))
    sha256_after: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(db.Model):
    """A single row locked while appending, so that the chain stays linear under concurrency."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(default=0)
