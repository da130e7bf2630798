"""E-mails to agents: each is queued in the caller's transaction and sent by a worker after the
commit. The activation link's token travels only in the e-mail; the database keeps its SHA-256.

The confirmation e-mail has one writer, `confirm_memberships`, built for volume (an import of
1 000 agents, a re-send to 10 000): the links and the e-mails' jobs are written with bulk inserts
and the broker gets one message per chunk of e-mails (`outbox.enqueue_many`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy import insert, text

from service import formatting
from service.agents.models import ActivationLink, Membership
from service.config import settings
from service.extensions import db
from service.mail.queue import queue_mails
from service.reference.models import Convention, Employer
from service.timeutil import local, utcnow
from service.wording import employer_designation

#: how long an activation link stays valid
ACTIVATION_DAYS = 14
#: the page of the agents' space the link opens (service.pages.adherent)
ACTIVATION_PATH = "/adherent/activation"


class Confirmed(Protocol):
    """What the confirmation e-mail tells of a membership: a `Membership` or a row selected with
    these columns."""

    @property
    def id(self) -> int: ...
    @property
    def convention_id(self) -> int: ...
    @property
    def reference(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def joins_on(self) -> date: ...
    @property
    def premium(self) -> Decimal: ...
    @property
    def employer_contribution(self) -> Decimal: ...
    @property
    def employee_share(self) -> Decimal: ...


#: the columns `confirm_memberships` reads, for callers that select rows rather than objects
CONFIRMED_COLUMNS = (
    Membership.id,
    Membership.convention_id,
    Membership.reference,
    Membership.first_name,
    Membership.last_name,
    Membership.email,
    Membership.joins_on,
    Membership.premium,
    Membership.employer_contribution,
    Membership.employee_share,
)


def activation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def confirmation_subject(employer: Employer, membership: Confirmed) -> str:
    who = employer_designation(employer)
    return f"Votre adhésion à la prévoyance {who.of_the} ({membership.reference})"


def confirmation_body(
    employer: Employer,
    convention: Convention,
    membership: Confirmed,
    *,
    token: str,
    expires_at: datetime,
) -> str:
    """The confirmation e-mail's text: the membership, its premium's breakdown, the start of
    cover, and the single-use link with its last valid day (Paris time)."""
    who = employer_designation(employer)
    expires = formatting.long_date(local(expires_at, settings().timezone).date())
    return (
        f"Bonjour {membership.first_name} {membership.last_name},\n\n"
        f"Votre adhésion n° {membership.reference} au contrat collectif de prévoyance "
        f"proposé par {who.the} est enregistrée par {convention.manager}, gestionnaire du "
        f"contrat pour le compte {formatting.of(convention.insurer)}. Votre garantie "
        f"commence le {formatting.long_date(membership.joins_on)}.\n\n"
        f"Votre cotisation mensuelle : {formatting.money(membership.premium)}, dont "
        f"{formatting.money(membership.employer_contribution)} pris en charge par votre "
        f"employeur ; reste à votre charge : {formatting.money(membership.employee_share)}.\n\n"
        "Créez votre espace adhérent pour consulter votre adhésion, télécharger votre "
        "certificat d'adhésion et la notice d'information, et désigner vos bénéficiaires :\n"
        f"{settings().public_url}{ACTIVATION_PATH}?jeton={token}\n\n"
        f"Ce lien ne sert qu'une fois et reste valable jusqu'au {expires} inclus. "
        "Passé ce délai, demandez à votre employeur de vous renvoyer cette confirmation.\n\n"
        "Ensuite, connectez-vous à votre espace avec votre adresse électronique et votre mot "
        f"de passe : {settings().public_url}/adherent/connexion\n"
    )


def confirm_memberships(employer: Employer, memberships: Sequence[Confirmed]) -> int:
    """Write a single-use link for each of the employer's `memberships` and queue the
    confirmation e-mail carrying it, in bulk, in the caller's transaction (the caller commits):
    the number of e-mails queued."""
    if not memberships:
        return 0
    now = utcnow()
    expires_at = now + timedelta(days=ACTIVATION_DAYS)
    conventions: dict[int, Convention] = {}
    hashes: list[str] = []
    messages: list[tuple[str, str, str, str | None]] = []
    for m in memberships:
        convention = conventions.get(m.convention_id)
        if convention is None:
            convention = db.session.get_one(Convention, m.convention_id)
            conventions[m.convention_id] = convention
        token = secrets.token_urlsafe(32)
        hashes.append(activation_token_hash(token))
        body = confirmation_body(employer, convention, m, token=token, expires_at=expires_at)
        messages.append((m.email, confirmation_subject(employer, m), body, token))
    _insert_links(
        [m.id for m in memberships],
        [m.email for m in memberships],
        hashes,
        now=now,
        expires_at=expires_at,
    )
    queue_mails(messages)
    return len(messages)


def membership_confirmed(membership: Membership) -> None:
    """Write a single-use link for the agent and queue the confirmation e-mail carrying it."""
    db.session.flush()  # the membership's id
    confirm_memberships(membership.employer, [membership])


_LINKS_PG = text(
    "INSERT INTO activation_link (token_hash, membership_id, email, expires_at, created_at) "
    "SELECT h, m, e, :expires, :now "
    "FROM unnest(CAST(:hashes AS varchar[]), CAST(:members AS integer[]), "
    "CAST(:emails AS varchar[])) AS t(h, m, e)"
)


def _insert_links(
    member_ids: list[int],
    emails: list[str],
    hashes: list[str],
    *,
    now: datetime,
    expires_at: datetime,
) -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        # one statement whatever the count: the values as arrays unnested by PostgreSQL
        db.session.execute(
            _LINKS_PG,
            {
                "hashes": hashes,
                "members": member_ids,
                "emails": emails,
                "expires": expires_at,
                "now": now,
            },
        )
        return
    db.session.execute(
        insert(ActivationLink),
        [
            {
                "token_hash": token_hash,
                "membership_id": membership_id,
                "email": email,
                "expires_at": expires_at,
                "created_at": now,
            }
            for membership_id, email, token_hash in zip(member_ids, emails, hashes, strict=True)
        ],
    )
