from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import db
from service.timeutil import utcnow

ROLES = ("admin", "staff", "cdg", "employer", "agent")


class User(db.Model):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    cdg_code: Mapped[str | None] = mapped_column(String(8))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(db.Model):
    """A bearer token, stored as the SHA-256 of its value (tokens carry 256 random bits).

    Staff, CDG and admin tokens belong to a user; employer tokens come from a portal session and
    are bound to one SIRET and one kit, with an expiry.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    cdg_code: Mapped[str | None] = mapped_column(String(8))
    siret: Mapped[str | None] = mapped_column(String(14))
    #: agent tokens: the agent's account (service.agents), by table name
    agent_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent_account.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship()


class WebSession(db.Model):
    """A signed-in browser (staff, CDG, admin or employer pages).

    The signed session cookie carries a random id; the row, found by the id's SHA-256, says who
    and until when. Signing out deletes the row, so a cookie copied before sign-out is worthless
    after it; every request checks the row.
    """

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    siret: Mapped[str | None] = mapped_column(String(14))
    kit_id: Mapped[int | None]
    agent_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    user: Mapped[User | None] = relationship()
