"""A collectivité's subscription request (DSC) and the prerequisites staff check before a kit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.extensions import db
from service.timeutil import utcnow

#: a request's states: `unconfirmed` (waiting for the contact's e-mail link: staff never see
#: it), `submitted` (to check), `accepted`, `refused`
REQUEST_STATES = ("unconfirmed", "submitted", "accepted", "refused")
#: the kinds of prerequisite an employer needs before its kit, in the order staff read them
PREREQUISITE_KINDS = (
    "subscription-request",
    "deliberation",
    "cst-opinion",
    "premium-elements-list",
)


class SubscriptionRequest(db.Model):
    __tablename__ = "subscription_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    cdg_id: Mapped[int] = mapped_column(ForeignKey("cdg.id"), index=True)
    siret: Mapped[str] = mapped_column(String(14), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: the employer fields of `POST /employers`, as validated (dates as ISO text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    contact_name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(254), index=True)
    status: Mapped[str] = mapped_column(String(12), default="unconfirmed", index=True)
    #: {"deliberation": {"key", "sha256", "size", "format", "filename", "pages"}, ...}
    files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: SHA-256 of the single-use confirmation token (the token travels only in the e-mail)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime]
    submitted_from: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(254))
    decision_reason: Mapped[str | None] = mapped_column(String(1000))
    employer_id: Mapped[int | None] = mapped_column(ForeignKey("employer.id"), index=True)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}


class Prerequisite(db.Model):
    """One paper an employer must have sent before its kit, one row per paper received: the
    newest of each kind is in force, the older ones are its history."""

    __tablename__ = "prerequisite"
    __table_args__ = (Index("ix_prerequisite_employer_id_kind", "employer_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    received_on: Mapped[date]
    storage_key: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    #: "pdf", "csv" or "xlsx"
    format: Mapped[str] = mapped_column(String(8))
    #: "request" (an accepted online request) or "post" (received by post, uploaded by staff)
    source: Mapped[str] = mapped_column(String(12))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscription_request.id"))
    recorded_by: Mapped[str] = mapped_column(String(254))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
