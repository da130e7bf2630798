from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.timeutil import utcnow

#: a convention's regime, declared once (French wording in service.labels)
REGIMES = ("facultative", "mandatory")


class Cdg(db.Model):
    __tablename__ = "cdg"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conventions: Mapped[list[Convention]] = relationship(back_populates="cdg")


class Convention(db.Model):
    __tablename__ = "convention"
    __table_args__ = (UniqueConstraint("cdg_id", "reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cdg_id: Mapped[int] = mapped_column(ForeignKey("cdg.id"), index=True)
    reference: Mapped[str] = mapped_column(String(60))
    insurer: Mapped[str] = mapped_column(String(200))
    manager: Mapped[str] = mapped_column(String(200))
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    base_rate: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    cdg_fee_rate: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    #: list of {"code", "label", "rate"} (rate as a string, percent)
    options: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    template_set: Mapped[str] = mapped_column(String(60), default="default")
    #: "facultative" (décret n° 2022-581) or "mandatory" (membership compulsory): REGIMES
    regime: Mapped[str] = mapped_column(String(12), default="facultative")
    #: the insurer's legal identification, as the contract states it
    insurer_legal_form: Mapped[str | None] = mapped_column(String(120))
    insurer_capital: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    insurer_register: Mapped[str | None] = mapped_column(String(120))
    insurer_address: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cdg: Mapped[Cdg] = relationship(back_populates="conventions")


class Employer(db.Model):
    __tablename__ = "employer"

    id: Mapped[int] = mapped_column(primary_key=True)
    siret: Mapped[str] = mapped_column(String(14), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(400))
    email: Mapped[str] = mapped_column(String(254))
    cdg_id: Mapped[int] = mapped_column(ForeignKey("cdg.id"), index=True)
    convention_id: Mapped[int] = mapped_column(ForeignKey("convention.id"), index=True)
    headcount: Mapped[int]
    cst_opinion_on: Mapped[date]
    deliberation_on: Mapped[date]
    joins_on: Mapped[date]
    #: {"mode": "flat", "amount": "15.00"} or
    #: {"mode": "by_category", "amounts": {"A": "7.00", ...}, "criteria": "..."}
    contribution: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: "F", "M" or None: the title of the person signing for the employer (« la présidente »)
    signatory_gender: Mapped[str | None] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    cdg: Mapped[Cdg] = relationship()
    convention: Mapped[Convention] = relationship()
