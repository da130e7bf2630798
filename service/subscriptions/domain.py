"""Subscription requests (DSC): submitted by a collectivité with its files, confirmed by the
contact's e-mail link, then accepted (the employer is created or updated, its prerequisites
recorded) or refused by staff. Prerequisites: the papers an employer needs before its kit.

Every function works in the caller's transaction except where it says it commits; e-mails are
queued in the outbox in that transaction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from jinja2 import Environment, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from weasyprint import HTML

from service import formatting, labels
from service.accounts.auth import Principal
from service.audit.domain import record
from service.config import settings
from service.errors import Conflict, InvalidInput, NotFound, ServiceError
from service.extensions import db
from service.mail.queue import queue_mail
from service.ratelimit import Rule, limiter
from service.reference import domain as reference
from service.reference.models import Cdg, Convention, Employer
from service.reference.rules import normalize_siret, parse_contribution
from service.subscriptions.files import (
    ANY_FORMAT,
    CONTENT_TYPES,
    PDF_ONLY,
    CheckedFile,
    check_file,
)
from service.subscriptions.models import PREREQUISITE_KINDS, Prerequisite, SubscriptionRequest
from service.subscriptions.schemas import SubscriptionIn
from service.timeutil import local, utcnow
from storage import ObjectNotFound, ObjectStore, StorageError, sha256_hex

log = logging.getLogger(__name__)

#: how long the contact's confirmation link stays valid
LINK_HOURS = 48
#: submissions per e-mail address and per client address (moving windows)
SUBMIT_EMAIL = Rule.of("subscription-email", "3/hour; 10/day")
SUBMIT_ADDRESS = Rule.of("subscription-address", "10/hour; 30/day")
#: the request's files: form field -> (prerequisite kind, accepted formats)
REQUEST_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "deliberation": ("deliberation", PDF_ONLY),
    "cst_opinion": ("cst-opinion", PDF_ONLY),
    "premium_elements": ("premium-elements-list", ANY_FORMAT),
}
#: formats a prerequisite uploaded by staff may take
KIND_FORMATS = {
    "subscription-request": PDF_ONLY,
    "deliberation": PDF_ONLY,
    "cst-opinion": PDF_ONLY,
    "premium-elements-list": ANY_FORMAT,
}
QUARANTINE = "quarantine/subscriptions/"
STORED = "subscriptions/"
EXTENSIONS = {"pdf": "pdf", "xlsx": "xlsx", "csv": "csv"}


class LinkExpired(ServiceError):
    status = 410
    code = "link_expired"
    message = "Ce lien a expiré : déposez à nouveau votre demande."


class PrerequisitesMissing(Conflict):
    """409 `prerequisites_missing`, with the kinds missing (`missing`) in the JSON answer."""

    code = "prerequisites_missing"

    def __init__(self, missing: Sequence[str]) -> None:
        names = ", ".join(labels.prerequisite_lower(k) for k in missing)
        super().__init__(
            f"Pièces préalables manquantes : {names}. Enregistrez-les avant d'émettre le kit, "
            "ou indiquez le motif d'une émission sans elles.",
        )
        self.missing = list(missing)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["error"]["missing"] = self.missing
        return data


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- checks ------------------------------------------------------------------------------------


def _check_employer_fields(cdg: Cdg, data: SubscriptionIn) -> None:
    """What `create_employer` checks, without creating anything (a public form's answer)."""
    if data.cdg != cdg.code:
        raise InvalidInput(
            f"Cette demande s'adresse au CDG {cdg.code} : « cdg » doit valoir {cdg.code}.",
            code="cdg_mismatch",
            field="cdg",
        )
    normalize_siret(data.siret)
    convention = db.session.get(Convention, data.convention_id)
    if convention is None or convention.cdg_id != cdg.id:
        raise InvalidInput(
            "Convention inconnue pour ce CDG.", code="unknown_convention", field="convention_id"
        )
    reference._check_kind(data.kind)
    parse_contribution(data.contribution, regime=convention.regime)
    joins_on = data.joins_on or reference._default_joins_on(convention, data.deliberation_on)
    reference._check_employer_dates(convention, data.cst_opinion_on, data.deliberation_on, joins_on)


def _throttle(email: str, address: str | None) -> None:
    """429 with Retry-After beyond the limits. Every attempt counts against the client's
    address, refused or not; only the requests actually stored count against the e-mail
    address (`_count_stored`), so a stranger's failed tries cannot lock out a real contact."""
    rules = ((SUBMIT_EMAIL, email.lower()), (SUBMIT_ADDRESS, address or "inconnue"))
    for rule, ident in rules:
        limiter().check(
            rule,
            ident,
            message="Trop de demandes de souscription depuis cette adresse : réessayez plus tard.",
        )
    limiter().hit(SUBMIT_ADDRESS, address or "inconnue")


def _count_stored(email: str) -> None:
    """A request was stored for this e-mail address: it counts against its limit."""
    limiter().hit(SUBMIT_EMAIL, email.lower())


def _discard(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except ObjectNotFound:
        pass
    except StorageError:
        log.warning("could not delete %s now", key)


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


def _keep_files(
    uploads: dict[str, Upload], *, store: ObjectStore, max_bytes: int, prefix: str
) -> dict[str, dict[str, Any]]:
    """Quarantine, check, then keep each file; on any refusal nothing is kept."""
    kept: list[str] = []
    quarantined: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    try:
        for field, (kind, formats) in REQUEST_FILES.items():
            upload = uploads.get(field)
            label = labels.SUBSCRIPTION_FILES[field]
            if upload is None:
                raise InvalidInput(
                    f"Joignez le fichier : {label[:1].lower()}{label[1:]}.",
                    code="file_missing",
                    field=field,
                )
            digest = sha256_hex(upload.data)
            qkey = f"{QUARANTINE}{prefix}/{field}"
            store.put(qkey, upload.data, sha256=digest, content_type="application/octet-stream")
            quarantined.append(qkey)
            checked = check_file(
                upload.data, field=field, label=label, formats=formats, max_bytes=max_bytes
            )
            key = f"{STORED}{prefix}/{field}.{EXTENSIONS[checked.format]}"
            store.put(key, upload.data, sha256=digest, content_type=CONTENT_TYPES[checked.format])
            kept.append(key)
            out[field] = {
                "key": key,
                "sha256": digest,
                "size": len(upload.data),
                "format": checked.format,
                "pages": checked.pages,
                "filename": (upload.filename or "")[-120:],
                "kind": kind,
            }
    except BaseException:
        for key in kept:
            _discard(store, key)
        raise
    finally:
        for key in quarantined:
            _discard(store, key)
    return out


# -- submission and confirmation ---------------------------------------------------------------


def submit_request(
    *,
    cdg_code: str,
    data: SubscriptionIn,
    uploads: dict[str, Upload],
    address: str | None,
    store: ObjectStore,
    max_bytes: int,
) -> SubscriptionRequest:
    """Check, keep the files, record the request and e-mail the contact its confirmation link;
    commits. Nothing is kept of a refused request. Staff see it only once confirmed."""
    cdg = reference.get_cdg(cdg_code)
    _throttle(str(data.contact_email), address)  # counted in the limiter's store, not here
    _check_employer_fields(cdg, data)
    siret = normalize_siret(data.siret)
    prefix = f"{cdg.code}/{siret}/{uuid.uuid4().hex[:12]}"
    files = _keep_files(uploads, store=store, max_bytes=max_bytes, prefix=prefix)
    token = secrets.token_urlsafe(32)
    employer_fields = data.model_dump(mode="json", exclude={"contact_name", "contact_email"})
    employer_fields["siret"] = siret
    employer_fields["contribution"] = parse_contribution(
        data.contribution,
        regime=db.session.get(Convention, data.convention_id).regime,  # type: ignore[union-attr]
    ).to_json()
    try:
        request_row = SubscriptionRequest(
            cdg_id=cdg.id,
            siret=siret,
            name=data.name,
            data=employer_fields,
            contact_name=data.contact_name,
            contact_email=str(data.contact_email),
            status="unconfirmed",
            files=files,
            token_hash=token_hash(token),
            token_expires_at=utcnow() + timedelta(hours=LINK_HOURS),
            submitted_from=address,
        )
        db.session.add(request_row)
        db.session.flush()
        record(
            "subscription_submitted",
            actor=f"contact:{data.contact_email}",
            siret=siret,
            address=address,
            details={
                "subscription_id": request_row.id,
                "cdg": cdg.code,
                "files": {f: v["sha256"] for f, v in files.items()},
            },
        )
        queue_mail(
            str(data.contact_email),
            "Confirmez votre demande de souscription à la prévoyance",
            f"Bonjour {data.contact_name},\n\n"
            f"Une demande de souscription de « {data.name} » (SIRET {siret}) au contrat de "
            f"prévoyance proposé par le {cdg.name} a été déposée avec cette adresse.\n\n"
            "Pour la transmettre au gestionnaire, confirmez votre adresse électronique en "
            "ouvrant ce lien :\n"
            f"{settings().public_url}/cdg/{cdg.code}/souscription/confirmation?jeton={token}\n\n"
            f"Ce lien ne sert qu'une fois et expire dans {LINK_HOURS} heures. Si vous n'êtes "
            "pas à l'origine de cette demande, ignorez ce message : elle ne sera pas transmise.\n",
            secret=token,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        for item in files.values():
            _discard(store, item["key"])
        raise
    _count_stored(str(data.contact_email))
    return request_row


def find_by_token(token: str) -> SubscriptionRequest:
    row = db.session.scalar(
        select(SubscriptionRequest).where(SubscriptionRequest.token_hash == token_hash(token))
    )
    if row is None:
        raise NotFound("Lien de confirmation inconnu.", code="unknown_link")
    return row


def confirm_request(*, token: str, address: str | None) -> SubscriptionRequest:
    """The contact opened its link: the request reaches staff. Single use, expiring; commits."""
    subscription = find_by_token(token)
    if subscription.status != "unconfirmed":
        raise Conflict(
            "Ce lien a déjà servi : votre demande est transmise au gestionnaire.",
            code="link_used",
        )
    if subscription.token_expires_at <= utcnow():
        raise LinkExpired()
    subscription.status, subscription.confirmed_at = "submitted", utcnow()
    try:
        db.session.flush()
    except StaleDataError as exc:
        db.session.rollback()
        raise Conflict("Ce lien a déjà servi.", code="link_used") from exc
    record(
        "subscription_confirmed",
        actor=f"contact:{subscription.contact_email}",
        siret=subscription.siret,
        address=address,
        details={"subscription_id": subscription.id},
    )
    db.session.commit()
    return subscription


# -- staff -------------------------------------------------------------------------------------


def list_requests(*, status: str = "submitted") -> Sequence[SubscriptionRequest]:
    if status not in ("submitted", "accepted", "refused"):
        states = ", ".join(
            f"« {labels.subscription_state(s).lower()} »"
            for s in ("submitted", "accepted", "refused")
        )
        raise InvalidInput(
            f"État de demande inconnu : choisissez parmi {states}.",
            code="invalid_status",
            field="status",
        )
    return db.session.scalars(
        select(SubscriptionRequest)
        .where(SubscriptionRequest.status == status)
        .order_by(SubscriptionRequest.confirmed_at, SubscriptionRequest.id)
    ).all()


def get_request(request_id: int) -> SubscriptionRequest:
    """A request staff may see: an unconfirmed one does not exist for them."""
    subscription = db.session.get(SubscriptionRequest, request_id)
    if subscription is None or subscription.status == "unconfirmed":
        raise NotFound("Demande de souscription introuvable.", code="unknown_subscription")
    return subscription


def request_file(row: SubscriptionRequest, field: str) -> dict[str, Any]:
    item = (row.files or {}).get(field)
    if item is None:
        raise NotFound("Fichier introuvable.", code="unknown_file")
    return item


#: what a public request never changes on an existing employer: the contact details staff
#: hold are kept (a stranger could otherwise redirect the kit's e-mails and post)
KEPT_ON_UPDATE = ("email", "address")


def request_file_name(row: SubscriptionRequest, field: str) -> str:
    """What a person saves: `demande-12-deliberation.pdf`, from the French label."""
    item = request_file(row, field)
    label = labels.SUBSCRIPTION_FILES.get(field, "Fichier")
    return f"demande-{row.id}-{formatting.file_stem(label)}.{item['format']}"


def prerequisite_file_name(employer: Employer, row: Prerequisite) -> str:
    """`deliberation-21810004800014.pdf`, from the French label of the paper."""
    return f"{formatting.file_stem(labels.prerequisite(row.kind))}-{employer.siret}.{row.format}"


def _employer_changes(data: dict[str, Any]) -> dict[str, Any]:
    changes = {k: v for k, v in data.items() if k not in ("siret", "cdg") and v is not None}
    for name in ("cst_opinion_on", "deliberation_on", "joins_on"):
        if isinstance(changes.get(name), str):
            changes[name] = date.fromisoformat(changes[name])
    return changes


def decide_request(
    request_id: int,
    *,
    accept: bool,
    reason: str | None,
    principal: Principal,
    store: ObjectStore,
    version: int | None = None,
) -> SubscriptionRequest:
    """Accept (the employer created, or updated when its SIRET exists, with its prerequisites
    from the request's files) or refuse with a reason e-mailed to the contact; commits."""
    subscription = get_request(request_id)
    if version is not None and version != subscription.version:
        raise Conflict(
            "Cette demande a changé depuis son affichage : rechargez.", code="stale_subscription"
        )
    if subscription.status != "submitted":
        raise Conflict("Cette demande a déjà fait l'objet d'une décision.", code="already_decided")
    reason = (reason or "").strip() or None
    if not accept and not reason:
        raise InvalidInput("Indiquez le motif du refus.", code="reason_required", field="reason")
    summary_key = None
    try:
        if accept:
            employer = _accept(subscription, principal=principal, store=store)
            summary_key = f"{STORED}{subscription.id}-dsc.pdf"
            subscription.employer_id = employer.id
        subscription.status = "accepted" if accept else "refused"
        subscription.decided_at = utcnow()
        subscription.decided_by, subscription.decision_reason = principal.actor, reason
        db.session.flush()
        record(
            "subscription_accepted" if accept else "subscription_refused",
            actor=principal.actor,
            siret=subscription.siret,
            details={"subscription_id": subscription.id, "reason": reason},
        )
        cdg = db.session.get(Cdg, subscription.cdg_id)
        cdg_name = cdg.name if cdg else "CDG"
        if accept:
            body = (
                f"Bonjour {subscription.contact_name},\n\n"
                f"La demande de souscription de « {subscription.name} » au contrat de prévoyance "
                f"proposé par le {cdg_name} est acceptée. Le kit contractuel de la collectivité "
                "lui sera adressé prochainement.\n"
            )
            subject = "Votre demande de souscription est acceptée"
        else:
            body = (
                f"Bonjour {subscription.contact_name},\n\n"
                f"La demande de souscription de « {subscription.name} » au contrat de prévoyance "
                f"proposé par le {cdg_name} n'a pas pu être acceptée.\n\nMotif : {reason}\n\n"
                "Vous pouvez déposer une nouvelle demande une fois les pièces corrigées.\n"
            )
            subject = "Votre demande de souscription n'a pas été acceptée"
        queue_mail(subscription.contact_email, subject, body)
        db.session.commit()
    except StaleDataError as exc:
        db.session.rollback()
        if summary_key:
            _discard(store, summary_key)
        raise Conflict(
            "Cette demande vient d'être traitée par quelqu'un d'autre.", code="already_decided"
        ) from exc
    except BaseException:
        db.session.rollback()
        if summary_key:
            _discard(store, summary_key)
        raise
    return subscription


def _accept(row: SubscriptionRequest, *, principal: Principal, store: ObjectStore) -> Employer:
    data = dict(row.data)
    existing = db.session.scalar(select(Employer).where(Employer.siret == row.siret))
    if existing is not None:
        if existing.cdg_id != row.cdg_id:
            raise Conflict(
                "Un employeur de ce SIRET relève d'un autre CDG : la demande ne peut pas le "
                "modifier.",
                code="employer_of_other_cdg",
            )
        if _has_open_kit(existing):
            raise Conflict(
                "Cet employeur a un kit en attente de signature : une demande de souscription "
                "ne peut pas le modifier avant que ce kit soit signé, annulé ou remplacé.",
                code="employer_has_open_kit",
            )
        changes = _employer_changes(data)
        for name in KEPT_ON_UPDATE:
            changes.pop(name, None)
        employer = reference.update_employer(existing, **changes)
    else:
        changes = _employer_changes(data)
        cdg = db.session.get(Cdg, row.cdg_id)
        employer = reference.create_employer(
            siret=row.siret, cdg=cdg.code if cdg else "", **changes
        )
    received = local(row.confirmed_at or row.created_at, labels.zone_name()).date()
    summary = request_summary_pdf(row)
    _store_prerequisite(
        employer,
        "subscription-request",
        summary,
        fmt="pdf",
        received_on=received,
        source="request",
        actor=principal.actor,
        store=store,
        key=f"{STORED}{row.id}-dsc.pdf",
        subscription_id=row.id,
    )
    for item in (row.files or {}).values():
        _record(
            employer,
            item["kind"],
            key=item["key"],
            sha256=item["sha256"],
            size=item["size"],
            fmt=item["format"],
            received_on=received,
            source="request",
            actor=principal.actor,
            subscription_id=row.id,
        )
    return employer


def _has_open_kit(employer: Employer) -> bool:
    """A kit still waiting for signatures: neither countersigned, cancelled nor replaced (read
    from the kit table's lifecycle dates: this unit sits below the kits' one)."""
    kit = db.metadata.tables["kit"]
    found = db.session.execute(
        select(kit.c.id)
        .where(
            kit.c.employer_id == employer.id,
            kit.c.countersigned_at.is_(None),
            kit.c.cancelled_at.is_(None),
            kit.c.superseded_by_id.is_(None),
        )
        .limit(1)
    ).first()
    return found is not None


@dataclass(frozen=True)
class EmployerUpdate:
    """What accepting a request would change on the employer of its SIRET."""

    employer: Employer
    #: (French name, current value, value asked for) of each field that would change
    changes: tuple[tuple[str, str, str], ...]
    #: (French name, current value kept, value asked for and ignored)
    kept: tuple[tuple[str, str, str], ...]
    open_kit: bool


def employer_update(row: SubscriptionRequest) -> EmployerUpdate | None:
    """None when the request would create its employer; the before/after otherwise."""
    employer = db.session.scalar(select(Employer).where(Employer.siret == row.siret))
    if employer is None:
        return None
    data = row.data or {}

    def day(value: Any) -> str:
        if not value:
            return "—"
        return formatting.long_date(value if isinstance(value, date) else date.fromisoformat(value))

    def convention(value: Any) -> str:
        found = db.session.get(Convention, value or 0)
        return found.reference if found else "—"

    def contribution(value: Any) -> str:
        if isinstance(value, dict) and value.get("mode") == "flat":
            return f"{formatting.money(value.get('amount'))} par mois"
        if isinstance(value, dict) and value.get("amounts"):
            return " ; ".join(
                f"catégorie {c} : {formatting.money(a)}" for c, a in value["amounts"].items()
            )
        return "—"

    fields: list[tuple[str, str, Any, Any, Any]] = [
        ("name", "Nom", employer.name, data.get("name"), str),
        ("kind", "Type", employer.kind, data.get("kind"), labels.employer_kind),
        ("headcount", "Effectif", employer.headcount, data.get("headcount"), str),
        (
            "convention_id",
            "Convention",
            employer.convention_id,
            data.get("convention_id"),
            convention,
        ),
        ("cst_opinion_on", "Avis du CST", employer.cst_opinion_on, data.get("cst_opinion_on"), day),
        (
            "deliberation_on",
            "Délibération",
            employer.deliberation_on,
            data.get("deliberation_on"),
            day,
        ),
        ("joins_on", "Date d'effet", employer.joins_on, data.get("joins_on"), day),
        (
            "contribution",
            "Participation de l'employeur",
            employer.contribution,
            data.get("contribution"),
            contribution,
        ),
    ]
    changes = []
    for _, name, before, after, show in fields:
        if after is None:
            continue
        shown_before, shown_after = show(before), show(after)
        if shown_before != shown_after:
            changes.append((name, shown_before, shown_after))
    kept = []
    for field, name in (("email", "Adresse électronique"), ("address", "Adresse")):
        asked = str(data.get(field) or "")
        current = str(getattr(employer, field) or "")
        if asked and asked != current:
            kept.append((name, current, asked))
    return EmployerUpdate(
        employer=employer,
        changes=tuple(changes),
        kept=tuple(kept),
        open_kit=_has_open_kit(employer),
    )


_SUMMARY = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html><html lang="fr"><head><meta charset="utf-8"><style>
body{font-family:sans-serif;font-size:11pt} h1{font-size:15pt}
td,th{text-align:left;padding:2pt 6pt;vertical-align:top} th{width:40%}</style></head><body>
<h1>Demande de souscription collectivité (DSC) déposée en ligne</h1>
<p>Demande n° {{ row.id }}, déposée le {{ submitted }} et confirmée par son contact le
{{ confirmed }}.</p>
<table>{% for name, value in rows %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
<h2>Pièces jointes</h2><ul>{% for f in files %}<li>{{ f }}</li>{% endfor %}</ul>
</body></html>"""
)


def request_summary_rows(row: SubscriptionRequest) -> list[tuple[str, str]]:
    """The request's data as staff and the DSC read them: French names, French values."""
    from_data = row.data or {}
    contribution = from_data.get("contribution") or {}
    if isinstance(contribution, dict) and contribution.get("mode") == "flat":
        paid = f"{formatting.money(contribution.get('amount'))} par mois"
    elif isinstance(contribution, dict) and contribution.get("amounts"):
        paid = " ; ".join(
            f"catégorie {c} : {formatting.money(a)}" for c, a in contribution["amounts"].items()
        )
    else:
        paid = "—"

    def day(name: str) -> str:
        value = from_data.get(name)
        return formatting.long_date(date.fromisoformat(value)) if value else "—"

    convention = db.session.get(Convention, from_data.get("convention_id") or 0)
    return [
        ("Collectivité", row.name),
        ("SIRET", formatting.siret(row.siret)),
        ("Type", labels.employer_kind(from_data.get("kind"))),
        ("Adresse", str(from_data.get("address") or "")),
        ("Adresse électronique", str(from_data.get("email") or "")),
        ("Convention", convention.reference if convention else "—"),
        ("Effectif", str(from_data.get("headcount") or "0")),
        ("Avis du CST", day("cst_opinion_on")),
        ("Délibération", day("deliberation_on")),
        ("Date d'effet souhaitée", day("joins_on")),
        ("Participation de l'employeur", paid),
        ("Contact", f"{row.contact_name} <{row.contact_email}>"),
    ]


def request_summary_pdf(row: SubscriptionRequest) -> bytes:
    zone = labels.zone_name()
    html = _SUMMARY.render(
        row=row,
        submitted=formatting.long_date(local(row.created_at, zone).date()),
        confirmed=formatting.long_date(local(row.confirmed_at or row.created_at, zone).date()),
        rows=request_summary_rows(row),
        files=[labels.SUBSCRIPTION_FILES.get(f, f) for f in (row.files or {})],
    )
    return HTML(string=html).write_pdf()


# -- prerequisites -----------------------------------------------------------------------------


def _record(
    employer: Employer,
    kind: str,
    *,
    key: str,
    sha256: str,
    size: int,
    fmt: str,
    received_on: date,
    source: str,
    actor: str,
    subscription_id: int | None = None,
    address: str | None = None,
) -> Prerequisite:
    # a new row each time: the previous papers stay as history, the newest is in force
    row = Prerequisite(employer_id=employer.id, kind=kind)
    db.session.add(row)
    row.received_on, row.storage_key, row.sha256, row.size = received_on, key, sha256, size
    row.format, row.source, row.subscription_id = fmt, source, subscription_id
    row.recorded_by, row.recorded_at = actor, utcnow()
    db.session.flush()
    record(
        "prerequisite_recorded",
        actor=actor,
        siret=employer.siret,
        address=address,
        sha256_after=sha256,
        details={"kind": kind, "source": source, "received_on": received_on.isoformat()},
    )
    return row


def _prerequisite_key(employer: Employer, kind: str, fmt: str) -> str:
    return f"prerequisites/{employer.siret}/{kind}/{uuid.uuid4().hex[:12]}.{EXTENSIONS[fmt]}"


def _store_prerequisite(
    employer: Employer,
    kind: str,
    data: bytes,
    *,
    fmt: str,
    received_on: date,
    source: str,
    actor: str,
    store: ObjectStore,
    key: str | None = None,
    subscription_id: int | None = None,
    address: str | None = None,
) -> Prerequisite:
    digest = sha256_hex(data)
    key = key or _prerequisite_key(employer, kind, fmt)
    store.put(key, data, sha256=digest, content_type=CONTENT_TYPES[fmt])
    return _record(
        employer,
        kind,
        key=key,
        sha256=digest,
        size=len(data),
        fmt=fmt,
        received_on=received_on,
        source=source,
        actor=actor,
        subscription_id=subscription_id,
        address=address,
    )


def check_kind(kind: str) -> str:
    if kind not in PREREQUISITE_KINDS:
        names = ", ".join(labels.prerequisite_lower(k) for k in PREREQUISITE_KINDS)
        raise NotFound(
            f"Pièce préalable inconnue : les pièces sont {names}.",
            code="unknown_prerequisite",
        )
    return kind


def receive_prerequisite(
    employer: Employer,
    kind: str,
    data: bytes,
    *,
    received_on: date | None,
    principal: Principal,
    address: str | None,
    store: ObjectStore,
    max_bytes: int,
    source: str = "post",
) -> Prerequisite:
    """Staff record a paper received by post (checked like a request's files); commits."""
    check_kind(kind)
    received_on = received_on or local(utcnow(), labels.zone_name()).date()
    if received_on > local(utcnow(), labels.zone_name()).date():
        raise InvalidInput(
            "La date de réception ne peut pas être dans le futur.",
            code="received_in_future",
            field="received_on",
        )
    checked: CheckedFile = check_file(
        data,
        field="file",
        label=labels.prerequisite(kind),
        formats=KIND_FORMATS[kind],
        max_bytes=max_bytes,
    )
    # the new file's key, kept before anything is written: on failure that file alone is
    # discarded (after a rollback the row would name the previous file, still in use)
    key = _prerequisite_key(employer, kind, checked.format)
    try:
        row = _store_prerequisite(
            employer,
            kind,
            data,
            fmt=checked.format,
            received_on=received_on,
            source=source,
            actor=principal.actor,
            store=store,
            key=key,
            address=address,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        _discard(store, key)
        raise
    return row


@dataclass(frozen=True)
class PrerequisiteStatus:
    items: tuple[Prerequisite, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def prerequisites_of(employer: Employer) -> PrerequisiteStatus:
    rows = {  # the newest of each kind wins (ordered oldest first)
        p.kind: p
        for p in db.session.scalars(
            select(Prerequisite)
            .where(Prerequisite.employer_id == employer.id)
            .order_by(Prerequisite.id)
        )
    }
    return PrerequisiteStatus(
        items=tuple(rows[k] for k in PREREQUISITE_KINDS if k in rows),
        missing=tuple(k for k in PREREQUISITE_KINDS if k not in rows),
    )


def prerequisite_history(employer: Employer, kind: str) -> Sequence[Prerequisite]:
    """Every paper of this kind received for the employer, the one in force first."""
    check_kind(kind)
    return db.session.scalars(
        select(Prerequisite)
        .where(Prerequisite.employer_id == employer.id, Prerequisite.kind == kind)
        .order_by(Prerequisite.id.desc())
    ).all()


def get_prerequisite(employer: Employer, kind: str) -> Prerequisite:
    check_kind(kind)
    row = db.session.scalar(
        select(Prerequisite)
        .where(Prerequisite.employer_id == employer.id, Prerequisite.kind == kind)
        .order_by(Prerequisite.id.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound("Cette pièce n'a pas encore été reçue.", code="prerequisite_missing")
    return row


def require_prerequisites(employer: Employer, *, override_reason: str | None) -> list[str]:
    """Before a kit: the missing kinds, when staff gave a reason to go on without them (an
    empty list when none is missing); 409 `prerequisites_missing` otherwise."""
    missing = list(prerequisites_of(employer).missing)
    if missing and not (override_reason or "").strip():
        raise PrerequisitesMissing(missing)
    return missing


def record_override(
    *, kit_id: int, siret: str, reference_text: str, missing: Iterable[str], reason: str, actor: str
) -> None:
    """Audit a kit issued without all its prerequisites (the proof certificate prints it)."""
    record(
        "prerequisites_overridden",
        actor=actor,
        kit_id=kit_id,
        siret=siret,
        details={"reference": reference_text, "missing": list(missing), "reason": reason.strip()},
    )


def employers_missing_prerequisites(employer_ids: Iterable[int]) -> set[int]:
    """Of these employers, those that lack at least one prerequisite."""
    ids = list(employer_ids)
    if not ids:
        return set()
    have: dict[int, set[str]] = {}
    for employer_id, kind in db.session.execute(
        select(Prerequisite.employer_id, Prerequisite.kind).where(Prerequisite.employer_id.in_(ids))
    ):
        have.setdefault(employer_id, set()).add(kind)
    return {i for i in ids if not set(PREREQUISITE_KINDS) <= have.get(i, set())}


# -- placeholders (demo data and tests) --------------------------------------------------------


@functools.cache
def placeholder_pdf() -> bytes:
    """A one-page PDF saying it stands for a paper received by post (demo data only)."""
    return HTML(
        string='<html lang="fr"><body style="font-family:sans-serif"><h1>Pièce de '
        "démonstration</h1><p>Document fictif enregistré comme pièce préalable reçue par "
        "courrier, pour les données de démonstration et les essais. Il ne vaut pas "
        "document de la collectivité.</p></body></html>"
    ).write_pdf()


def record_placeholders(
    employer: Employer, *, actor: str, store: ObjectStore, received_on: date | None = None
) -> list[Prerequisite]:
    """Record every missing prerequisite of the employer with the placeholder PDF, labelled
    as demo (`source="demo"`); the caller commits."""
    received_on = received_on or local(utcnow(), labels.zone_name()).date()
    data = placeholder_pdf()
    return [
        _store_prerequisite(
            employer,
            kind,
            data,
            fmt="pdf",
            received_on=received_on,
            source="demo",
            actor=actor,
            store=store,
        )
        for kind in prerequisites_of(employer).missing
    ]
