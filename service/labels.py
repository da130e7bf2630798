"""French labels of every code a person could otherwise read: the one place for them.

Kinds of documents, states of kits and returns, roles, audit events and actors. Pages, e-mails
and CSV exports go through these functions; an unknown code falls back to a neutral French
wording, never to the code itself.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

from service.formatting import file_stem, long_date
from service.formatting import siret as format_siret
from service.timeutil import DEFAULT_TIMEZONE, local

#: the titles of the kit's six documents, in the kit's order (`render.DOCUMENTS` reads them)
KIT_DOCUMENTS = {
    "special-conditions": "Conditions particulières",
    "information-notice": "Notice d'information",
    "enrolment-form": "Bulletin d'adhésion individuelle",
    "beneficiary-designation": "Désignation de bénéficiaire(s)",
    "membership-agreement": "Convention d'adhésion",
    "access-letter": "Courrier d'accès à l'espace « Nouvel Adhérent »",
}

#: titles of what is not one of the kit's six documents
DOCUMENTS = {
    "manifest": "Manifeste de l'archive",
    "proof": "Certificat de preuve",
    "bundle": "Kit complet (PDF)",
    "zip": "Kit complet (ZIP)",
}

#: kinds of employers (`reference.schemas` validates against these codes)
EMPLOYER_KINDS = {
    "commune": "Commune",
    "cc": "Communauté de communes",
    "ca": "Communauté d'agglomération",
    "ccas": "Centre communal d'action sociale",
    "cias": "Centre intercommunal d'action sociale",
    "syndicat": "Syndicat",
    "etablissement": "Établissement public local",
    "departement": "Département",
}

KIT_STATES = {
    "none": "Pas de kit",
    "issued": "Émis",
    "employer_signed": "Signé par la collectivité",
    "countersigned": "Contresigné",
    "archived": "Archivé",
    "superseded": "Remplacé",
    "cancelled": "Annulé",
}

#: a kit's state as a sentence (the proof certificate)
KIT_STATE_SENTENCES = {
    "issued": "émis, en attente des pièces signées par la collectivité",
    "employer_signed": "signé par la collectivité, en attente du contreseing de l'assureur",
    "countersigned": "contresigné par l'assureur",
    "archived": "contresigné et archivé",
    "superseded": "remplacé par un kit plus récent",
    "cancelled": "annulé",
}

#: the verification's result for a return, in a sentence
RETURN_RESULTS = {
    "accepted": "acceptée",
    "pending_review": "en attente d'examen par le gestionnaire",
    "refused": "refusée",
}

SIGNATURE_LEVELS = {
    "B-B": "signature PAdES de base (B-B)",
    "B-T": "signature PAdES horodatée (B-T)",
    "document-timestamp": "horodatage du document",
}

RETURN_STATES = {
    "accepted": "Accepté",
    "pending_review": "À revoir",
    "refused": "Refusé",
}

#: a returned piece (« pièce », feminine) as staff read its state in a column
PIECE_STATES = {
    "accepted": "Acceptée",
    "pending_review": "À examiner",
    "refused": "Refusée",
}

#: a returned piece's result as the employer reads it after « Résultat : »
PIECE_RESULTS = {
    "accepted": "acceptée",
    "pending_review": "en cours d'examen par votre gestionnaire",
    "refused": "refusée",
}


def piece_state(status: str | None) -> str:
    return PIECE_STATES.get(status or "", "État inconnu")


def piece_result(status: str | None) -> str:
    return PIECE_RESULTS.get(status or "", "en cours de traitement")


ROLES = {
    "admin": "administrateur",
    "staff": "gestionnaire",
    "cdg": "centre de gestion",
    "employer": "collectivité",
    "agent": "agent",
}

EVENTS = {
    "kit_issued": "Kit émis",
    "kit_cancelled": "Kit annulé",
    "kit_superseded": "Kit remplacé",
    "downloaded": "Téléchargement",
    "portal_session": "Connexion au portail",
    "portal_failed": "Échec de connexion au portail",
    "portal_unlocked": "Accès au portail débloqué",
    "return_received": "Pièce signée reçue",
    "return_accepted": "Pièce signée acceptée",
    "return_refused": "Pièce signée refusée",
    "return_pending_review": "Pièce signée à revoir",
    "return_reviewed": "Pièce signée examinée",
    "employer_signed": "Pièces signées par la collectivité",
    "countersigned": "Pièce contresignée par l'assureur",
    "archived": "Copie archivée",
    "kit_archived": "Kit archivé",
    "email_sent": "Courriel envoyé",
    "email_failed": "Échec d'envoi d'un courriel",
    "reminder": "Relance envoyée",
    "cover_start_overridden": "Début de garantie antérieur à l'émission (motif enregistré)",
    "proof_archived": "Certificat de preuve archivé",
    "archive_fixity_failed": "Copie archivée absente ou modifiée (contrôle d'intégrité)",
    "letters_downloaded": "Courrier d'accès téléchargé avec ceux de la campagne (impression)",
    "archive_downloaded": "Archive du CDG téléchargée (ZIP)",
}

#: kinds of background tasks (Celery task names), exact names first
JOB_KINDS = {
    "psc.mail.send": "Courriel",
    "psc.archive.copy": "Copie d'archive",
    "psc.archive.fixity": "Contrôle d'intégrité de l'archive",
    "psc.kits.remind_all": "Relance des employeurs",
    "psc.returns.sweep_uploads": "Nettoyage des dépôts inachevés",
    "psc.engine.sweep": "Reprise des tâches en attente",
}
#: then by the task's package (`psc.campaigns.…`), for tasks named elsewhere
JOB_KIND_PREFIXES = {
    "psc.campaigns.": "Kit de campagne",
    "psc.mail.": "Courriel",
    "psc.archive.": "Tâche d'archivage",
    "psc.kits.": "Tâche sur les kits",
    "psc.returns.": "Tâche sur les retours signés",
    "psc.agents.": "Tâche sur les adhésions",
}

JOB_STATES = {"pending": "En attente", "done": "Terminée", "failed": "En échec"}

CAMPAIGN_STATES = {"running": "En cours", "finished": "Terminée"}

#: exceptions a failed task may report (`SMTPServerDisconnected: …`), as staff read them
JOB_ERRORS = {
    "SMTP": "le serveur de courriel a refusé ou n'a pas répondu",
    "ConnectionRefusedError": "connexion refusée par un serveur",
    "ConnectionError": "connexion impossible à un serveur",
    "TimeoutError": "un serveur n'a pas répondu à temps",
    "socket.timeout": "un serveur n'a pas répondu à temps",
    "StorageUnavailable": "stockage injoignable",
    "StorageError": "erreur du stockage",
    "ObjectNotFound": "fichier introuvable dans le stockage",
    "OperationalError": "base de données indisponible",
}

FAILURE_REASONS = {
    "expired": "code expiré",
    "mismatch": "SIRET ou code incorrect",
    "cancelled": "kit annulé",
}

#: files named in download events: kinds, or the names the API records (`special-conditions.pdf`)
_FILE_SUFFIXES = {".pdf": "PDF", ".docx": "DOCX", ".zip": "ZIP"}

#: the French names of time zones a person reads (others print their own name)
ZONE_NAMES = {"Europe/Paris": "heure de Paris"}

#: which copy of a piece a file holds, in its name (`…-conditions-particulieres-signee.pdf`)
COPIES = {"": "", "signed": "-signee", "countersigned": "-contresignee"}


def document(kind: str | None) -> str:
    """A document's French title: the kit's six, then the extras."""
    if not kind:
        return ""
    return KIT_DOCUMENTS.get(kind) or DOCUMENTS.get(kind, "Document")


def employer_kind(code: str | None) -> str:
    """`ca` → `Communauté d'agglomération`: an employer's kind as a person reads it."""
    return EMPLOYER_KINDS.get(code or "", "Collectivité")


def file_name(kind: str) -> str:
    """A document's file name (no extension) from its French title, never its code:
    `special-conditions` → `conditions-particulieres`."""
    return file_stem(document(kind)) or "document"


def download_name(reference: str, kind: str, *, copy: str = "", ext: str = "pdf") -> str:
    """The name a person saves: `PSC-81-2026-000001-conditions-particulieres-signee.pdf`."""
    return f"{reference}-{file_name(kind)}{COPIES.get(copy, '')}.{ext}"


def kit_state(status: str | None) -> str:
    return KIT_STATES.get(status or "none", "État inconnu")


def return_state(status: str | None) -> str:
    return RETURN_STATES.get(status or "", "État inconnu")


def role(code: str | None) -> str:
    return ROLES.get(code or "", "utilisateur")


def event(code: str) -> str:
    return EVENTS.get(code, "Autre événement enregistré")


def actor(
    value: str | None, *, names: dict[str, str] | None = None, staff_names: bool = True
) -> str:
    """Who did something, in French, never the code: `staff:agent@assureur.fr` →
    `gestionnaire agent@assureur.fr`; `employer:<siret>` → `la collectivité (SIRET …)`;
    `portail:<siret>` (a failed portal attempt: anyone may type a SIRET) → `tentative pour le
    SIRET …`; `system` → `le service`; `cli:root` (a `flask` command) → `commande
    d'administration (utilisateur système root)`. `names` maps SIRETs to employers' names;
    `staff_names=False` says only the role (the employer's copy of the proof)."""
    if not value:
        return "—"
    if value == "system":
        return "le service"
    if value == "cli":
        return "commande d'administration"
    prefix, _, rest = value.partition(":")
    if prefix == "cli":  # `flask …` run by a system account: `cli:root`
        if not rest or not staff_names:
            return "commande d'administration"
        return f"commande d'administration (utilisateur système {rest})"
    if prefix == "portail":
        return f"tentative pour le SIRET {format_siret(rest)}" if rest else "tentative de connexion"
    if prefix == "employer":
        if not rest:
            return "la collectivité"
        name = (names or {}).get(rest)
        who = f"{name} (SIRET {format_siret(rest)})" if name else f"(SIRET {format_siret(rest)})"
        return f"la collectivité {who}"
    if prefix in ROLES:
        if rest and rest != "None" and staff_names:
            return f"{ROLES[prefix]} {rest}"
        return ROLES[prefix]
    return "utilisateur du service"


def file_label(name: str | None) -> str:
    """A file named in an event (`special-conditions.pdf`, `bundle.pdf`, `kit.zip`) in French."""
    if not name:
        return ""
    if name.startswith("archive/"):
        return f"copie archivée : {document(name[len('archive/') :])}"
    stem, suffix = name, ""
    for ext, label in _FILE_SUFFIXES.items():
        if name.endswith(ext):
            stem, suffix = name[: -len(ext)], label
            break
    if stem.endswith("/signed"):
        stem, extra = stem[: -len("/signed")], " signé"
    else:
        extra = ""
    if stem == "kit":
        stem = "zip"
    if stem in ("bundle", "zip"):
        return DOCUMENTS[stem]
    label = document(stem)
    return f"{label}{extra}{f' ({suffix})' if suffix else ''}"


def zone_name() -> str:
    """The time zone of every time a person reads: `TIMEZONE` (Europe/Paris by default)."""
    if has_app_context():
        settings = current_app.extensions.get("psc.settings")
        if settings is not None:
            return str(settings.timezone)
    return DEFAULT_TIMEZONE


def zone() -> ZoneInfo:
    return ZoneInfo(zone_name())


def zone_label(name: str | None = None) -> str:
    """`heure de Paris` for Europe/Paris, else `heure locale (<zone>)`."""
    name = name or zone_name()
    return ZONE_NAMES.get(name, f"heure locale ({name})")


def paris(value: datetime | None) -> datetime | None:
    """A naive UTC datetime (as stored) in the readers' time zone (Paris unless configured)."""
    if value is None:
        return None
    return local(value, zone_name())


def when(value: datetime | None) -> str:
    """`22/11/2026 à 15 h 04`, Paris time."""
    local = paris(value)
    return "" if local is None else f"{local:%d/%m/%Y} à {local.hour} h {local:%M}"


def when_seconds(value: datetime | None) -> str:
    """`22/11/2026 15:04:05`, Paris time (the audit trail)."""
    local = paris(value)
    return "" if local is None else f"{local:%d/%m/%Y %H:%M:%S}"


def day(value: datetime | None) -> str:
    local = paris(value)
    return "" if local is None else f"{local:%d/%m/%Y}"


def long_day(value: datetime | None) -> str:
    local = paris(value)
    return "" if local is None else long_date(local.date())


def event_details(code: str, details: dict[str, Any] | None) -> dict[str, str]:
    """The file, the decision and the reason of an audit event, in French."""
    details = details or {}
    file = ""
    if details.get("file"):
        file = file_label(str(details["file"]))
    elif details.get("kind"):
        file = document(str(details["kind"]))
    decision = ""
    if code == "return_reviewed":
        decision = "acceptée" if details.get("accept") else "refusée"
    elif code == "return_accepted":
        decision = "acceptée"
    elif code == "return_refused":
        decision = "refusée"
    elif code == "return_pending_review":
        decision = "à revoir"
    reason = ""
    if details.get("reason"):
        raw = str(details["reason"])
        reason = FAILURE_REASONS.get(raw, raw) if code == "portal_failed" else raw
    elif details.get("reasons"):
        reason = " ; ".join(str(r) for r in details["reasons"])
    elif details.get("subject"):
        reason = str(details["subject"])
    elif code == "return_refused" and details.get("code"):
        reason = "pièce non conforme"
    if details.get("signers"):
        names = ", ".join(str(n) for n in details["signers"])
        reason = f"{reason} ; signée par {names}" if reason else f"signée par {names}"
    if code in ("kit_issued", "kit_superseded") and details.get("reference"):
        file = f"kit {details['reference']}"
    if code == "kit_superseded" and details.get("superseded_by"):
        reason = f"remplacé par le kit {details['superseded_by']}"
    return {"file": file, "decision": decision, "reason": reason}


def job_kind(task: str | None) -> str:
    """`psc.mail.send` → `Courriel`: a background task's kind as staff read it."""
    if not task:
        return "Tâche"
    if task in JOB_KINDS:
        return JOB_KINDS[task]
    for prefix, text in JOB_KIND_PREFIXES.items():
        if task.startswith(prefix):
            return text
    return "Autre tâche"


def job_state(status: str | None) -> str:
    return JOB_STATES.get(status or "", "État inconnu")


def campaign_state(status: str | None) -> str:
    return CAMPAIGN_STATES.get(status or "", "État inconnu")


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?::\s*(.*))?$", re.DOTALL)


def job_error(text: str | None) -> str:
    """A task's last error in French: French messages (the service's own errors) as they are;
    an exception (`SMTPServerDisconnected: Connection closed`) by what it means, its class name
    dropped, its own words kept as the technical detail."""
    if not text:
        return ""
    match = _EXCEPTION.match(text)
    if match is None or " " in match.group(1):
        return text
    name, detail = match.group(1), (match.group(2) or "").strip()
    meaning = next(
        (v for k, v in JOB_ERRORS.items() if name.startswith(k) or name.endswith(k)),
        "erreur technique",
    )
    meaning = meaning[0].upper() + meaning[1:]
    return f"{meaning} (détail : {detail})" if detail else meaning


# -- hG: the CDG's follow-up of agents' memberships ------------------------------------------------

#: a membership's state, as a column of counts (« Actifs : 12 »)
MEMBERSHIP_STATE_COUNTS = {
    "active": "Actifs",
    "invited": "Invités (compte non créé)",
    "left": "Partis",
}
#: the payroll files named in download events (`file_label`)
DOCUMENTS.update(
    {
        "payroll-settings": "Paramétrage de la paie",
        "payroll.csv": "Fichier mensuel des cotisations des agents (CSV)",
    }
)
