"""Users, bearer tokens and the principal a request acts as."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import column, select, table

from service.accounts.models import ROLES, ApiToken, User
from service.errors import Conflict, InvalidInput, Unauthorized
from service.extensions import db
from service.timeutil import utcnow

_hasher = PasswordHasher()
TOKEN_PREFIX = "psc_"
#: the CDG codes a CDG account may name, read by table name: the reference data depend on the
#: accounts (a principal), not the other way round
_CDG = table("cdg", column("code"))
#: an agent token's account, read by table name likewise (service.agents sits above accounts)
_AGENT_ACCOUNT = table("agent_account", column("id"), column("email"))


@dataclass(frozen=True)
class Principal:
    role: str
    email: str | None = None
    user_id: int | None = None
    cdg_code: str | None = None
    siret: str | None = None
    #: an agent's account (role `agent`): the agent sees only the memberships it holds
    agent_account_id: int | None = None

    @property
    def actor(self) -> str:
        if self.role == "employer":
            return f"employer:{self.siret}"
        return f"{self.role}:{self.email}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        _hasher.hash(password)  # same cost whether or not the account exists
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(
    *, email: str, role: str, cdg_code: str | None = None, password: str | None = None
) -> tuple[User, str]:
    """Create a user and its first API token; the token is returned once and stored hashed."""
    email = email.strip().lower()
    if role not in ROLES or role in ("employer", "agent"):
        raise InvalidInput("Rôle inconnu : admin, staff ou cdg.", code="invalid_role", field="role")
    if role == "cdg":
        if not cdg_code:
            raise InvalidInput("Un compte CDG est rattaché à un CDG (--cdg).", code="cdg_required")
        if db.session.scalar(select(_CDG.c.code).where(_CDG.c.code == cdg_code)) is None:
            raise InvalidInput(f"CDG inconnu : {cdg_code}.", code="unknown_cdg", field="cdg")
    elif cdg_code:
        raise InvalidInput("Seul un compte CDG est rattaché à un CDG.", code="invalid_role")
    if password is not None and len(password) < 10:
        raise InvalidInput(
            "Le mot de passe compte au moins 10 caractères.", code="weak_password", field="password"
        )
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise Conflict(f"Un compte existe déjà pour {email}.", code="duplicate_user")
    user = User(
        email=email,
        role=role,
        cdg_code=cdg_code,
        password_hash=hash_password(password) if password else None,
    )
    db.session.add(user)
    db.session.flush()
    token = issue_token(role=role, user=user, cdg_code=cdg_code)
    return user, token


def issue_token(
    *,
    role: str,
    user: User | None = None,
    cdg_code: str | None = None,
    siret: str | None = None,
    expires_at: datetime | None = None,
    agent_account_id: int | None = None,
) -> str:
    token = new_token()
    db.session.add(
        ApiToken(
            token_hash=hash_token(token),
            role=role,
            user_id=user.id if user else None,
            cdg_code=cdg_code,
            siret=siret,
            expires_at=expires_at,
            agent_account_id=agent_account_id,
        )
    )
    return token


def authenticate_bearer(token: str) -> Principal:
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked:
        raise Unauthorized("Jeton d'accès invalide.", code="invalid_token")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthorized("Jeton d'accès expiré.", code="token_expired")
    if row.user is not None and not row.user.active:
        raise Unauthorized("Compte désactivé.", code="account_disabled")
    if row.role == "agent":
        return agent_principal(row.agent_account_id)
    return Principal(
        role=row.role,
        email=row.user.email if row.user else None,
        user_id=row.user_id,
        cdg_code=row.cdg_code,
        siret=row.siret,
    )


def agent_principal(account_id: int | None) -> Principal:
    """The principal of an agent's token or web session: its account and address."""
    email = (
        db.session.scalar(select(_AGENT_ACCOUNT.c.email).where(_AGENT_ACCOUNT.c.id == account_id))
        if account_id is not None
        else None
    )
    if email is None:
        raise Unauthorized("Jeton d'accès invalide.", code="invalid_token")
    return Principal(role="agent", email=email, agent_account_id=account_id)
