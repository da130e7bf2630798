"""E-mails to employers (the same from the API, the pages and the commands): each is queued in
the caller's transaction and sent by a worker after the commit."""

from __future__ import annotations

from service import labels
from service.config import settings
from service.formatting import capitalize_first, long_date
from service.kits.models import Kit
from service.mail.queue import queue_mail
from service.wording import after_colon, employer_designation, long_when


def _title(kind: str) -> str:
    return labels.document(kind)


def _cover_sentence(kit: Kit) -> str:
    """The start of cover the kit's documents state (stored on the kit)."""
    if kit.cover_starts_on is None:
        return ""
    return f"La garantie prend effet le {long_date(kit.cover_starts_on)}.\n\n"


def kit_issued(kit: Kit) -> None:
    """The portal's address, never the access code (it travels only in the printed letter)."""
    employer = kit.employer
    queue_mail(
        employer.email,
        f"Votre kit contractuel PSC prévoyance {kit.reference}",
        f"Bonjour,\n\nLe kit contractuel {kit.reference} "
        f"{employer_designation(employer).of_the} est disponible dans "
        f"l'espace « Nouvel Adhérent » : {settings().public_url}/portail\n\n"
        f"{_cover_sentence(kit)}Connectez-vous avec "
        "votre SIRET et le code d'accès imprimé sur le courrier du kit (il ne vous sera jamais "
        "communiqué par courriel).\n",
        kit_id=kit.id,
    )


def return_accepted(kit: Kit, kind: str) -> None:
    queue_mail(
        kit.employer.email,
        f"Pièce signée reçue – kit {kit.reference}",
        f"Bonjour,\n\nLa pièce « {_title(kind)} » du kit {kit.reference} a été acceptée. "
        "L'assureur va la contresigner.\n",
        kit_id=kit.id,
    )


def return_refused(kit: Kit, kind: str, message: str) -> None:
    queue_mail(
        kit.employer.email,
        f"Pièce signée refusée – kit {kit.reference}",
        f"Bonjour,\n\nLa pièce « {_title(kind)} » déposée pour le kit {kit.reference} n'a pas "
        f"pu être acceptée : {after_colon(message)}\n"
        "Vous pouvez la déposer à nouveau depuis votre espace "
        f"{settings().public_url}/portail.\n",
        kit_id=kit.id,
    )


def kit_countersigned(kit: Kit) -> None:
    queue_mail(
        kit.employer.email,
        f"Kit {kit.reference} contresigné",
        f"Bonjour,\n\nL'assureur a contresigné les pièces du kit {kit.reference}. Les "
        f"exemplaires signés des deux parties sont disponibles dans votre espace "
        f"{settings().public_url}/portail et sont archivés par votre centre de gestion.\n",
        kit_id=kit.id,
    )


def kit_cancelled(kit: Kit) -> None:
    """The employer learns that its kit no longer counts, why, and what comes next."""
    employer = kit.employer
    who = employer_designation(employer)
    when = long_when(kit.cancelled_at)
    reason = (kit.cancel_reason or "").strip()
    reason_line = (
        f"Motif indiqué par votre gestionnaire : {after_colon(reason)}\n\n" if reason else ""
    )
    queue_mail(
        employer.email,
        f"Annulation du kit contractuel PSC prévoyance {kit.reference}",
        f"Bonjour,\n\nLe kit contractuel {kit.reference} {who.of_the} a été annulé"
        f"{f' le {when}' if when else ''}.\n\n{reason_line}"
        "Ce que cela change :\n"
        "- le code d'accès imprimé sur le courrier de ce kit ne fonctionne plus ;\n"
        "- les pièces de ce kit ne doivent plus être signées ni nous être retournées : "
        "celles que vous auriez déjà signées ne seront pas contresignées.\n\n"
        f"{capitalize_first(who.the)} recevra un nouveau kit, avec un nouveau courrier et un "
        "nouveau code d'accès, si l'adhésion à la convention de participation se poursuit. "
        "Pour toute question, contactez votre gestionnaire.\n",
        kit_id=kit.id,
    )


def reminder(kit: Kit) -> None:
    """The signed pieces of an open kit are still missing."""
    queue_mail(
        kit.employer.email,
        f"Relance – pièces signées attendues pour le kit {kit.reference}",
        f"Bonjour,\n\nNous n'avons pas encore reçu les pièces signées du kit {kit.reference} "
        f"(conditions particulières et convention d'adhésion). Déposez-les dans votre espace "
        f"{settings().public_url}/portail avec votre SIRET et le code d'accès du courrier.\n",
        kit_id=kit.id,
    )
