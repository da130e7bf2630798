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
    # -- agents' registration (issue 11, hB) --
    "membership_registered": "Adhésion d'un agent enregistrée",
    "memberships_imported": "Adhésions d'agents importées",
    "membership_left": "Départ d'un agent enregistré",
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

# -- hH: the engine's fan-out job (a worker hands a chunk of queued jobs, e-mails…, to the broker)
JOB_KINDS.update({"psc.engine.fanout": "Envoi groupé de tâches"})

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


# -- The regime in force of a convention (issue 12) --------------------------------------------
#: what every page and document says of a convention's regime (`reference.models.REGIMES`)
REGIMES = {
    "facultative": "contrat collectif à adhésion facultative",
    "mandatory": "contrat collectif à adhésion obligatoire",
}
#: the legal basis, the membership, the employer's share and sick leave, per regime
REGIME_WORDING: dict[str, dict[str, str]] = {
    "facultative": {
        "name": REGIMES["facultative"],
        "basis": "l'article L. 827-7 du code général de la fonction publique et le décret "
        "n° 2022-581 du 20 avril 2022",
        #: after « en application de »
        "basis_of": "l'article L. 827-7 du code général de la fonction publique et du décret "
        "n° 2022-581 du 20 avril 2022",
        "membership": "L'adhésion est facultative et individuelle : chaque agent choisit "
        "librement d'adhérer ou non.",
        "contribution": "Elle ne peut être inférieure à 7,00 € par mois (20 % du montant de "
        "référence de 35 €), sauf lorsque la cotisation de l'agent est elle-même inférieure à ce "
        "montant.",
        "sick_leave": "En l'absence de contrat collectif antérieur, un agent en arrêt de maladie "
        "peut adhérer après trente jours de reprise continue.",
        "sick_leave_item": "après trente jours de reprise continue, si aucun contrat collectif "
        "ne vous couvrait auparavant",
    },
    "mandatory": {
        "name": REGIMES["mandatory"],
        "basis": "la loi de 2025 relative à la protection sociale complémentaire en matière de "
        "prévoyance des agents publics territoriaux",
        "basis_of": "la loi de 2025 relative à la protection sociale complémentaire en matière "
        "de prévoyance des agents publics territoriaux",
        "membership": "L'adhésion aux garanties minimales est obligatoire pour tous les agents "
        "concernés, sauf dans les cas de dispense prévus par décret ; les options restent au "
        "choix de chaque agent.",
        "contribution": "Elle couvre au moins 50 % de la cotisation des garanties minimales de "
        "chaque agent.",
        "sick_leave": "Un agent en arrêt de maladie à la date d'effet du contrat y est tenu "
        "d'adhérer après trente jours consécutifs de reprise du travail.",
        "sick_leave_item": "adhésion obligatoire après trente jours consécutifs de reprise du "
        "travail",
    },
}


def regime(code: str | None) -> str:
    """« contrat collectif à adhésion facultative » or « … obligatoire »."""
    return REGIMES.get(code or "", "contrat collectif")


def regime_wording(code: str | None) -> dict[str, str]:
    return REGIME_WORDING.get(code or "", REGIME_WORDING["facultative"])


# -- signing in the browser (hF) ------------------------------------------------------------

EVENTS.update(
    {
        "signatory_named": "Signataire de la collectivité désigné",
        "signing_code_sent": "Code de signature envoyé au signataire",
        "signing_code_rejected": "Code de signature erroné",
        "signing_request_blocked": "Demande de signature bloquée (trop d'essais)",
        "browser_signed": "Pièce signée en ligne par le signataire",
    }
)
#: how the signatory signed in the browser
BROWSER_SIGNATURE_MODES = {"drawn": "signature dessinée", "typed": "nom saisi"}


# -- agents' registration (issue 11, hB) ---------------------------------------------------------

#: an agent's category
AGENT_CATEGORIES = {"A": "Catégorie A", "B": "Catégorie B", "C": "Catégorie C"}


def agent_category(category: str | None) -> str:
    return AGENT_CATEGORIES.get(category or "", "Catégorie inconnue")


#: the BAI's fields (form labels, the import's error list): the column names stay in the file
MEMBERSHIP_FIELDS = {
    "last_name": "Nom",
    "first_name": "Prénom",
    "birth_date": "Date de naissance",
    "email": "Courriel",
    "status": "Statut",
    "category": "Catégorie",
    "paid_by_hour_or_day": "Rémunéré à l'heure ou à la vacation",
    "in_normal_service": "En position d'activité normale",
    "on_sick_leave": "En arrêt de maladie",
    "returned_on": "Reprise après un arrêt de maladie",
    "previous_collective_contract": "Couvert auparavant par un contrat collectif",
    "has_individual_contract": "Contrat de prévoyance individuel",
    "base": "Rémunération servant d'assiette",
    "tbi": "Traitement brut indiciaire (TBI, avec l'indemnité compensatrice de CSG)",
    "nbi": "Nouvelle bonification indiciaire (NBI)",
    "ri": "Régime indemnitaire (IFSE…)",
    "cti": "Complément de traitement indiciaire (CTI)",
    "options": "Options",
    "joins_on": "Début de la garantie",
    "file": "Fichier",
}


def membership_field(name: str | None) -> str:
    """`base.tbi` → its French label; an unknown field gets a neutral wording."""
    key = (name or "").rsplit(".", 1)[-1]
    return MEMBERSHIP_FIELDS.get(key, "Ligne entière" if not name else "Autre donnée")


# -- hE: subscription requests (DSC) and prerequisites -----------------------------------------

#: the papers an employer sends before its kit (kinds of `service.subscriptions.models`)
PREREQUISITES = {
    "subscription-request": "Demande de souscription collectivité (DSC)",
    "deliberation": "Délibération",
    "cst-opinion": "Avis du comité social territorial (CST)",
    "premium-elements-list": "Liste des éléments de rémunération à assurer",
}
SUBSCRIPTION_STATES = {
    "unconfirmed": "Adresse électronique à confirmer",
    "submitted": "À examiner",
    "accepted": "Acceptée",
    "refused": "Refusée",
}
#: the files of a request (the form's fields) and what they are
SUBSCRIPTION_FILES = {
    "deliberation": "Délibération",
    "cst_opinion": "Avis du comité social territorial (CST)",
    "premium_elements": "Liste des éléments de rémunération à assurer",
}
PREREQUISITE_SOURCES = {
    "request": "demande de souscription en ligne",
    "post": "reçue par courrier",
    "demo": "pièce de démonstration",
}
EVENTS.update(
    {
        "subscription_submitted": "Demande de souscription déposée",
        "subscription_confirmed": "Demande de souscription confirmée par le contact",
        "subscription_accepted": "Demande de souscription acceptée",
        "subscription_refused": "Demande de souscription refusée",
        "prerequisite_recorded": "Pièce préalable enregistrée",
        "prerequisites_overridden": "Kit émis sans toutes les pièces préalables (motif enregistré)",
    }
)


def prerequisite(kind: str | None) -> str:
    return PREREQUISITES.get(kind or "", "Pièce préalable")


def prerequisite_lower(kind: str | None) -> str:
    """Within a sentence: « délibération », « avis du comité social territorial (CST) »."""
    text = prerequisite(kind)
    return text[:1].lower() + text[1:]


def subscription_state(status: str | None) -> str:
    return SUBSCRIPTION_STATES.get(status or "", "État inconnu")


# -- agents' space (issue 11, the agent's side) ----------------------------------------------

#: a membership's states (service.agents.models.MEMBERSHIP_STATES)
MEMBERSHIP_STATES = {
    "invited": "En attente d'activation du compte",
    "active": "Active",
    "left": "Terminée (départ)",
}

#: an agent's status (service.agents.models.AGENT_STATUSES)
AGENT_STATUSES = {
    "titulaire": "fonctionnaire titulaire",
    "stagiaire": "fonctionnaire stagiaire",
    "contractuel": "contractuel de droit public",
}

#: who a named beneficiary is to the agent
RELATIONSHIPS = {
    "conjoint": "Conjoint ou conjointe",
    "partenaire_pacs": "Partenaire de PACS",
    "concubin": "Concubin ou concubine",
    "enfant": "Enfant",
    "parent": "Père ou mère",
    "frere_soeur": "Frère ou sœur",
    "petit_enfant": "Petit-enfant",
    "autre": "Autre personne",
}

#: the clauses of a beneficiary designation
CLAUSES = {
    "standard": "Clause type",
    "specific": "Clause particulière (bénéficiaires nommés)",
}

#: the standard clause, as the certificate and the form print it
STANDARD_CLAUSE = (
    "Mon conjoint non séparé de corps ni divorcé, ou mon partenaire lié par un PACS, ou mon "
    "concubin ; à défaut, mes enfants nés ou à naître, vivants ou représentés, par parts "
    "égales ; à défaut, mes héritiers, par parts égales."
)

EVENTS.update(
    {
        "agent_account_created": "Compte d'agent créé (lien d'activation utilisé)",
        "agent_membership_attached": "Adhésion rattachée au compte d'un agent",
        "agent_activation_refused": "Lien d'activation d'un agent refusé",
        "agent_session": "Connexion d'un agent",
        "beneficiaries_designated": "Désignation de bénéficiaires enregistrée",
    }
)


def membership_state(code: str | None) -> str:
    return MEMBERSHIP_STATES.get(code or "", "État inconnu")


def agent_status(code: str | None) -> str:
    return AGENT_STATUSES.get(code or "", "statut non précisé")


def relationship(code: str | None) -> str:
    return RELATIONSHIPS.get(code or "", "Autre personne")


def clause(code: str | None) -> str:
    return CLAUSES.get(code or "", "Clause inconnue")


def option(code: str | None) -> str:
    """An option whose convention no longer names it: never its code."""
    return "Option de la convention"


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
