from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.kits.lifecycle import ISSUED
from service.reference.models import Convention, Employer
from service.timeutil import utcnow

if TYPE_CHECKING:  # annotations only: these models sit above the kit's and name it by string
    from service.archive.models import ArchiveRecord
    from service.returns.models import KitReturn


class KitCounter(db.Model):
    """Last sequence number used per CDG and year, for readable kit references."""

    __tablename__ = "kit_counter"

    cdg_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last: Mapped[int] = mapped_column(default=0)


class Kit(db.Model):
    __tablename__ = "kit"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id"), index=True)
    convention_id: Mapped[int] = mapped_column(ForeignKey("convention.id"), index=True)
    #: written only by `service.kits.lifecycle`
    status: Mapped[str] = mapped_column(String(20), default=ISSUED, index=True)
    access_code_hash: Mapped[str] = mapped_column(String(64))
    access_code_expires_at: Mapped[datetime]
    bundle_key: Mapped[str] = mapped_column(String(300))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    #: empty since migration 0016: the ZIP is made at each download (`zip_of`); earlier kits
    #: keep theirs as an object
    zip_key: Mapped[str] = mapped_column(String(300))
    zip_sha256: Mapped[str] = mapped_column(String(64))
    issued_by: Mapped[str | None] = mapped_column(String(254))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the day of issue its documents print (readers' time zone); its ZIP's entries are dated so
    issued_on: Mapped[date | None]
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    employer_signed_at: Mapped[datetime | None]
    countersigned_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("kit.id"))
    #: the start of cover the documents state (the first day of a month); None before 0006
    cover_starts_on: Mapped[date | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(254))
    cancel_reason: Mapped[str | None] = mapped_column(String(1000))

    employer: Mapped[Employer] = relationship()
    convention: Mapped[Convention] = relationship()
    documents: Mapped[list[KitDocument]] = relationship(
        back_populates="kit", order_by="KitDocument.position", cascade="all, delete-orphan"
    )
    #: read-only views of what the packages above record about the kit (named, not imported:
    #: returns and archive depend on kits, not the other way round)
    returns: Mapped[list[KitReturn]] = relationship(
        "KitReturn", viewonly=True, order_by="KitReturn.id"
    )
    archive_records: Mapped[list[ArchiveRecord]] = relationship(
        "ArchiveRecord", viewonly=True, order_by="ArchiveRecord.id"
    )


class KitDocument(db.Model):
    __tablename__ = "kit_document"
    __table_args__ = (UniqueConstraint("kit_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kit_id: Mapped[int] = mapped_column(ForeignKey("kit.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    position: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    requires_signature: Mapped[bool]
    pdf_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    pages: Mapped[int]
    docx_key: Mapped[str | None] = mapped_column(String(300))
    docx_sha256: Mapped[str | None] = mapped_column(String(64))
    #: where the insurer's visible signature goes: [page, x1, y1, x2, y2] (PDF points)
    insurer_box: Mapped[list[float] | None] = mapped_column(JSON)

    kit: Mapped[Kit] = relationship(back_populates="documents")
