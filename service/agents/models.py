"""Memberships (adhésions individuelles), agents' accounts, activation links, beneficiaries.

A membership is one employment: the same person at two employers holds two memberships. An agent's
account (one per e-mail address) sees every membership carrying that address once activated.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import JSON, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.reference.models import Convention, Employer
from service.timeutil import utcnow

#: a membership's states, declared once (French labels in service.labels)
MEMBERSHIP_STATES = ("invited", "active", "left")
AGENT_STATUSES = ("titulaire", "stagiaire", "contractuel")
AGENT_CATEGORIES = ("A", "B", "C")
BASE_COMPONENTS = ("tbi", "nbi", "ri", "cti")


class AgentAccount(db.Model):
    """An agent's personal account, created by the single-use link e-mailed on confirmation."""

    __tablename__ = "agent_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    activated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(db.Model):
    """One agent's membership at one employer (the BAI), with the amounts computed at joining."""

    __tablename__ = "membership"
    __table_args__ = (
        # one open membership per person and employer (`duplicate_agent`); a departure frees it
        Index(
            "uq_membership_person_open",
            "employer_id",
            "person_key",
            unique=True,
            postgresql_where=sa.text("state <> 'left'"),
            sqlite_where=sa.text("state <> 'left'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: « ADH-81-000123 »: printed on the certificate and in the payroll file
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    employer_id: Mapped[int] = mapped_column(ForeignKey("employer.id"), index=True)
    convention_id: Mapped[int] = mapped_column(ForeignKey("convention.id"), index=True)
    #: the kit whose pieces the employer had signed when the agent joined
    kit_id: Mapped[int | None] = mapped_column(ForeignKey("kit.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("agent_account.id"), index=True)

    last_name: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date]
    #: normalised last name, first name and birth date: the same person at the same employer
    person_key: Mapped[str] = mapped_column(String(240))
    email: Mapped[str] = mapped_column(String(254), index=True)
    status: Mapped[str] = mapped_column(String(16))  # AGENT_STATUSES
    category: Mapped[str] = mapped_column(String(1))  # AGENT_CATEGORIES
    paid_by_hour_or_day: Mapped[bool] = mapped_column(default=False)
    in_normal_service: Mapped[bool] = mapped_column(default=True)
    on_sick_leave: Mapped[bool] = mapped_column(default=False)
    returned_on: Mapped[date | None]
    previous_collective_contract: Mapped[bool] = mapped_column(default=False)
    has_individual_contract: Mapped[bool] = mapped_column(default=False)
    #: monthly gross amounts as strings with two decimals: {"tbi","nbi","ri","cti"}
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: codes of the convention's options taken
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    joins_on: Mapped[date]

    #: computed when registered (the simulator's rules, the employer's scheme), monthly
    base_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    premium: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    employer_contribution: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    employee_share: Mapped[Decimal] = mapped_column(Numeric(12, 2))

    state: Mapped[str] = mapped_column(String(12), default="invited", index=True)
    left_on: Mapped[date | None]
    leave_reason: Mapped[str | None] = mapped_column(String(500))
    #: who registered it: "employer:<siret>" or "staff:<email>"
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    employer: Mapped[Employer] = relationship()
    convention: Mapped[Convention] = relationship()
    account: Mapped[AgentAccount | None] = relationship()


class ActivationLink(db.Model):
    """The single-use, expiring link e-mailed to an agent: only the token's SHA-256 is kept."""

    __tablename__ = "activation_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    membership: Mapped[Membership] = relationship()


class BeneficiaryDesignation(db.Model):
    """One version of a membership's beneficiary designation; the newest is in force, every
    earlier one stays as history."""

    __tablename__ = "beneficiary_designation"

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(ForeignKey("membership.id"), index=True)
    #: "standard" or "specific"
    clause: Mapped[str] = mapped_column(String(12))
    #: [{"name","birth_date","relationship","share"}] for a specific clause, else []
    beneficiaries: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    membership: Mapped[Membership] = relationship()
