"""E-mails to agents: each is queued in the caller's transaction and sent by a worker after the
commit. The activation link's token travels only in the e-mail; the database keeps its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from service.agents.models import ActivationLink, Membership
from service.config import settings
from service.extensions import db
from service.mail.queue import queue_mail
from service.timeutil import utcnow
from service.wording import employer_designation

#: how long an activation link stays valid
ACTIVATION_DAYS = 14


def activation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def membership_confirmed(membership: Membership) -> ActivationLink:
    """Write a single-use link for the agent and queue the confirmation e-mail carrying it."""
    token = secrets.token_urlsafe(32)
    link = ActivationLink(
        token_hash=activation_token_hash(token),
        membership=membership,
        email=membership.email,
        expires_at=utcnow() + timedelta(days=ACTIVATION_DAYS),
    )
    db.session.add(link)
    who = employer_designation(membership.employer)
    queue_mail(
        membership.email,
        "Votre adhésion à la prévoyance de votre employeur",
        f"Bonjour {membership.first_name} {membership.last_name},\n\n"
        f"Votre adhésion {membership.reference} au contrat de prévoyance proposé par "
        f"{who.the} est enregistrée.\n\n"
        "Créez votre espace personnel pour consulter votre adhésion, télécharger votre "
        "certificat et désigner vos bénéficiaires :\n"
        f"{settings().public_url}/adherent/activation?jeton={token}\n\n"
        f"Ce lien ne sert qu'une fois et expire dans {ACTIVATION_DAYS} jours.\n",
    )
    return link
