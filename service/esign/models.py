from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.kits.models import Kit
from service.timeutil import utcnow

#: a signing request's states: waiting for its code, used, dead (too many tries), replaced
REQUEST_STATES = ("pending", "used", "dead", "replaced")


class Signatory(db.Model):
    """Who signs for the collectivité, named in the portal (one per kit)."""

    __tablename__ = "esign_signatory"

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(254))
    named_by: Mapped[str] = mapped_column(String(254))
    named_at: Mapped[datetime] = mapped_column(default=utcnow)

    kit: Mapped[Kit] = relationship()


class SigningRequest(db.Model):
    """One one-time code sent for one piece. The code is kept only as an HMAC."""

    __tablename__ = "esign_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    nonce: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    signatory_name: Mapped[str] = mapped_column(String(120))
    signatory_title: Mapped[str] = mapped_column(String(80))
    signatory_email: Mapped[str] = mapped_column(String(254))
    document_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    mail_job_id: Mapped[int | None]
    requested_from: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[datetime | None]
    return_id: Mapped[int | None] = mapped_column(ForeignKey("kit_return.id"))

    kit: Mapped[Kit] = relationship()
