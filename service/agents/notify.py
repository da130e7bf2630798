"""E-mails to agents: each is queued in the caller's transaction and sent by a worker after the
commit. The activation link's token travels only in the e-mail; the database keeps its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from service import formatting
from service.agents.models import ActivationLink, Membership
from service.config import settings
from service.extensions import db
from service.mail.queue import queue_mail
from service.timeutil import local, utcnow
from service.wording import employer_designation

#: how long an activation link stays valid
ACTIVATION_DAYS = 14
#: the page of the agents' space the link opens (service.pages.adherent)
ACTIVATION_PATH = "/adherent/activation"


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
    convention = membership.convention
    expires = formatting.long_date(local(link.expires_at, settings().timezone).date())
    queue_mail(
        membership.email,
        f"Votre adhésion à la prévoyance {who.of_the} ({membership.reference})",
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
        f"de passe : {settings().public_url}/adherent/connexion\n",
    )
    return link
