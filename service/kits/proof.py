"""The proof certificate of a kit: what happened to it, who did it, when, and with which files.

`gather_facts` reads the kit, its returns, the countersigned copies, the archive records and the
audit trail up to a cut-off event, and turns them into plain French facts (labels, Paris times);
`render_proof` lays them out with the kit's fonts and stylesheet as one PDF/A-2b file.

The certificate downloaded from the API or the pages describes the kit as it stands (the cut-off
is the last event of the audit chain). The archived one is frozen: its cut-off is the kit's last
piece archiving event, so that running the archive job again rebuilds the very same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select
from weasyprint import HTML

from service import formatting, labels
from service.audit.models import AuditEvent
from service.extensions import db
from service.kits.lifecycle import ARCHIVED
from service.kits.models import Kit
from service.kits.render import template_set
from service.timeutil import DEFAULT_TIMEZONE, local, utcnow
from storage import ObjectStore, StorageError

if TYPE_CHECKING:  # annotations only: returns and archive sit above the kits (read via `Kit`)
    from service.archive.models import ArchiveRecord
    from service.returns.models import KitReturn

log = logging.getLogger(__name__)

#: the archive kind of the certificate, archived next to the manifest
PROOF = "proof"
MANIFEST = "manifest"

#: who reads a certificate: staff and the CDG read everything; the employer's copy names no
#: staff member and gives no address of failed portal attempts (anyone may type its SIRET)
Audience = Literal["staff", "cdg", "employer"]


# -- the facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    subject: str
    issuer: str
    serial: str
    fingerprint: str


@dataclass(frozen=True)
class SignerFacts:
    certificate: Certificate
    signed_at: str
    kind: str
    trust: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class CountersignFacts:
    at: str
    by: str
    level: str
    sha256: str
    certificate: Certificate | None


@dataclass(frozen=True)
class ReturnFacts:
    title: str
    received_at: str
    received_by: str
    address: str
    sha256: str
    size: int
    method: str
    result: str
    reasons: tuple[str, ...]
    signers: tuple[SignerFacts, ...]
    decision: str | None
    countersignature: CountersignFacts | None


@dataclass(frozen=True)
class DocumentFacts:
    title: str
    pages: int
    sha256: str
    signed_by: str


@dataclass(frozen=True)
class ArchivedFacts:
    title: str
    key: str
    sha256: str
    size: int
    archived_at: str


@dataclass(frozen=True)
class EventFacts:
    at: str
    what: str
    who: str
    address: str


@dataclass(frozen=True)
class ProofFacts:
    reference: str
    state: str
    made_at: str
    made_at_iso: str
    zone_label: str
    cdg: str
    employer: str
    employer_siret: str
    employer_address: str
    convention: str
    insurer: str
    manager: str
    issued_at: str
    issued_by: str
    documents: tuple[DocumentFacts, ...]
    bundle_sha256: str
    zip_sha256: str
    returns: tuple[ReturnFacts, ...]
    archived: tuple[ArchivedFacts, ...]
    events: tuple[EventFacts, ...]
    downloads: int
    chain_hash: str
    kit_last_hash: str
    kit_events: int
    frozen: bool
    #: the evidence of the pieces signed in the browser (hF)
    browser_signatures: tuple[BrowserSigningFacts, ...] = ()
    #: hE: the kit was issued without all its prerequisites: what was missing and why (French)
    prerequisites_override: str = ""


# -- signing in the browser (hF) ------------------------------------------------------------


@dataclass(frozen=True)
class BrowserSigningFacts:
    """What the audit event `browser_signed` records, as the certificate prints it (never the
    one-time code: it is recorded nowhere)."""

    title: str
    signatory: str
    email: str
    mode: str
    consent: str
    code_sent: str
    code_used: str
    at: str
    address: str
    user_agent: str
    shown_sha256: str
    result_sha256: str
    certificate_serial: str
    certificate_fingerprint: str
    level: str


def browser_signing_facts(
    events: Sequence[AuditEvent], zone: str
) -> tuple[BrowserSigningFacts, ...]:
    facts = []
    for e in events:
        if e.event != "browser_signed":
            continue
        d = e.details or {}
        who = d.get("signatory") or {}
        name = ", ".join(str(p) for p in (who.get("name"), who.get("title")) if p) or "—"
        mode = labels.BROWSER_SIGNATURE_MODES.get(str(d.get("mode")), "signature en ligne")
        if d.get("typed"):
            mode += f" (« {d['typed']} »)"
        queued = time_label(d.get("code_queued_at"), zone)
        sent = d.get("code_sent_at")
        attempts = int(d.get("attempts") or 1)
        certificate = d.get("certificate") or {}
        facts.append(
            BrowserSigningFacts(
                title=_title(str(d.get("kind"))),
                signatory=name,
                email=str(who.get("email") or "—"),
                mode=mode,
                consent=str(d.get("consent") or "—"),
                code_sent=f"demandé le {queued}, "
                + (f"envoyé le {time_label(sent, zone)}" if sent else "envoi non encore confirmé"),
                code_used=f"saisi le {time_label(d.get('code_used_at'), zone)}, "
                f"{attempts} essai{'s' if attempts > 1 else ''}",
                at=time_label(e.at, zone),
                address=e.address or "non connue",
                user_agent=str(d.get("user_agent") or "non indiqué"),
                shown_sha256=e.sha256_before or "—",
                result_sha256=e.sha256_after or "—",
                certificate_serial=str(certificate.get("serial") or "—"),
                certificate_fingerprint=str(certificate.get("fingerprint") or "—"),
                level=labels.SIGNATURE_LEVELS.get(str(d.get("level")), "signature PAdES"),
            )
        )
    return tuple(facts)


# -- French wording -------------------------------------------------------------------------


def time_label(value: datetime | str | None, zone: str = DEFAULT_TIMEZONE) -> str:
    """`20 avril 2022 à 14 h 49 min 05 s` in the reader's time zone; naive means UTC."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    moment = local(value, zone)
    return (
        f"{formatting.long_date(moment.date())} à {moment.hour} h {moment.minute:02d} min "
        f"{moment.second:02d} s"
    )


def _w3c(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


#: asn1crypto's English attribute names in a distinguished name, in French
DN_LABELS = (
    ("Organizational Unit", "Service"),
    ("Organization", "Organisation"),
    ("Common Name", "Nom"),
    ("Country", "Pays"),
    ("Locality", "Localité"),
    ("State/Province", "Région"),
    ("Email Address", "Adresse électronique"),
    ("Serial Number", "Numéro de série"),
    ("Given Name", "Prénom"),
    ("Surname", "Nom de famille"),
    ("Title", "Fonction"),
    ("Organization Identifier", "Identifiant de l'organisation"),
)


def french_dn(text: str) -> str:
    """`Common Name: CA, Country: FR` → `Nom : CA, Pays : FR`."""
    for english, french in sorted(DN_LABELS, key=lambda p: -len(p[0])):
        text = text.replace(f"{english}: ", f"{french} : ")
    return text


def _title(kind: str) -> str:
    return labels.document(kind)


def _event_what(event: AuditEvent) -> str:
    details = event.details or {}
    label = labels.event(event.event)
    if event.event == "return_reviewed":
        label = (
            "Pièce acceptée après examen" if details.get("accept") else "Pièce refusée après examen"
        )
    kind = details.get("kind")
    if isinstance(kind, str):
        label += f" : {_title(kind)}"
    if event.event == "kit_superseded" and details.get("superseded_by"):
        label += f" par le kit {details['superseded_by']}"
    if event.event == "return_reviewed" and details.get("reason"):
        label += f" (motif : {details['reason']})"
    if event.event == "prerequisites_overridden":  # hE
        label += f" : {_override_text(details)}"
    return label


# -- hE: prerequisites overridden ---------------------------------------------------------------


def _override_text(details: dict[str, Any]) -> str:
    missing = ", ".join(labels.prerequisite_lower(k) for k in details.get("missing") or ())
    return f"pièces manquantes : {missing or '—'} ; motif : {details.get('reason') or '—'}"


def _prerequisites_override(events: Sequence[AuditEvent]) -> str:
    found = [e for e in events if e.event == "prerequisites_overridden"]
    return _override_text(found[-1].details or {}) if found else ""


# -- end hE ------------------------------------------------------------------------------------


def _countersigner(data: bytes) -> Certificate | None:
    """The certificate of the last signature of a countersigned copy (the insurer's)."""
    try:
        signatures = PdfFileReader(io.BytesIO(data)).embedded_signatures
        if not signatures:
            return None
        cert = signatures[-1].signer_cert
        return Certificate(
            subject=french_dn(cert.subject.human_friendly),
            issuer=french_dn(cert.issuer.human_friendly),
            serial=format(cert.serial_number, "x"),
            fingerprint=hashlib.sha256(cert.dump()).hexdigest(),
        )
    except Exception:  # pyHanko on a damaged copy: the certificate says it is unreadable
        log.warning("cannot read the countersignature certificate", exc_info=True)
        return None


def _signer(raw: dict[str, Any], zone: str) -> SignerFacts:
    subject = ", ".join(p for p in (raw.get("name"), raw.get("organisation")) if p) or "—"
    return SignerFacts(
        certificate=Certificate(
            subject=subject,
            issuer=french_dn(str(raw.get("issuer") or "—")),
            serial=str(raw.get("serial") or "—"),
            fingerprint=str(raw.get("fingerprint") or "—"),
        ),
        signed_at=time_label(raw.get("signing_time"), zone)
        if raw.get("signing_time")
        else "non indiquée",
        kind=labels.SIGNATURE_LEVELS.get(str(raw.get("level")), "signature électronique")
        if raw.get("kind") != "timestamp"
        else labels.SIGNATURE_LEVELS["document-timestamp"],
        trust="certificat reconnu par les autorités de confiance du service"
        if raw.get("trusted")
        else "certificat non reconnu par les autorités de confiance du service",
        problems=tuple(str(p) for p in raw.get("problems") or ()),
    )


def _return_facts(
    ret: KitReturn,
    *,
    events: Sequence[AuditEvent],
    documents: ObjectStore,
    zone: str,
    who: Callable[[str | None], str],
) -> ReturnFacts:
    verification = ret.verification or {}
    signers = tuple(_signer(s, zone) for s in verification.get("signers") or ())
    if ret.status == "refused" and not signers and ret.refusal_code != "refused_by_reviewer":
        method = "fichier refusé avant toute vérification de signature"
    elif signers:
        method = "signature électronique (PAdES)"
    else:
        method = "signature manuscrite numérisée, vérifiée visuellement par le gestionnaire"
    result = labels.RETURN_RESULTS.get(ret.status, "inconnu")
    if ret.status == "refused" and ret.refusal_message:
        result += f" : {ret.refusal_message}"
    decision = None
    if ret.decided_by:
        verb = "acceptée" if ret.status == "accepted" else "refusée"
        decision = (
            f"{verb} après examen par {who(ret.decided_by)} "
            f"le {time_label(ret.decided_at, zone)}"
            + (f" (motif : {ret.decision_reason})" if ret.decision_reason else "")
        )
    countersignature = None
    if ret.countersigned_key:
        event = next(
            (
                e
                for e in events
                if e.event == "countersigned" and (e.details or {}).get("return_id") == ret.id
            ),
            None,
        )
        try:
            certificate = _countersigner(documents.get(ret.countersigned_key))
        except StorageError:
            certificate = None
        level = (event.details or {}).get("level") if event else None
        countersignature = CountersignFacts(
            at=time_label(ret.countersigned_at, zone),
            by=who(event.actor) if event else "—",
            level=labels.SIGNATURE_LEVELS.get(str(level), "signature PAdES"),
            sha256=ret.countersigned_sha256 or "—",
            certificate=certificate,
        )
    return ReturnFacts(
        title=_title(ret.kind),
        received_at=time_label(ret.uploaded_at, zone),
        received_by=who(ret.uploaded_by),
        address=ret.uploaded_from or "non connue",
        sha256=ret.sha256,
        size=ret.size,
        method=method,
        result=result,
        reasons=tuple(str(r) for r in verification.get("reasons") or ()),
        signers=signers,
        decision=decision,
        countersignature=countersignature,
    )


def gather_facts(
    kit: Kit,
    *,
    documents: ObjectStore,
    zone: str = DEFAULT_TIMEZONE,
    upto: AuditEvent | None = None,
    made_at: datetime | None = None,
    archived: Sequence[ArchivedFacts] | None = None,
    audience: Audience = "staff",
) -> ProofFacts:
    """Everything the certificate states, as of the audit event `upto` (the chain's last one
    when None); `made_at` defaults to that event's time."""
    if upto is None:
        upto = db.session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
    cutoff = upto.id if upto is not None else 0
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.kit_id == kit.id, AuditEvent.id <= cutoff)
        .order_by(AuditEvent.id)
    ).all()
    employer = kit.employer
    convention = kit.convention
    for_employer = audience == "employer"
    who = partial(labels.actor, names={employer.siret: employer.name}, staff_names=not for_employer)
    moment = made_at or (upto.at if upto is not None else kit.issued_at)
    db.session.expire(kit, ["returns", "archive_records"])  # read them now, as a query would
    returns = kit.returns
    if archived is None:
        archived = tuple(archived_facts(r, zone=zone) for r in kit.archive_records)
    docs = tuple(
        DocumentFacts(
            title=d.title,
            pages=d.pages,
            sha256=d.sha256,
            signed_by="la collectivité puis l'assureur" if d.requires_signature else "—",
        )
        for d in kit.documents
    )
    visible = [e for e in events if e.event != "downloaded"]
    return ProofFacts(
        reference=kit.reference,
        state=labels.KIT_STATE_SENTENCES.get(kit.status, "état inconnu"),
        made_at=time_label(moment, zone),
        made_at_iso=_w3c(moment),
        zone_label=labels.zone_label(zone),
        cdg=f"{employer.cdg.name} (CDG {employer.cdg.code})",
        employer=f"{labels.employer_kind(employer.kind)} : {employer.name}",
        employer_siret=formatting.siret(employer.siret),
        employer_address=employer.address,
        convention=convention.reference,
        insurer=convention.insurer,
        manager=convention.manager,
        issued_at=time_label(kit.issued_at, zone),
        issued_by=who(kit.issued_by),
        documents=docs,
        bundle_sha256=kit.bundle_sha256,
        zip_sha256=kit.zip_sha256,
        returns=tuple(
            _return_facts(r, events=events, documents=documents, zone=zone, who=who)
            for r in returns
        ),
        archived=tuple(archived),
        events=tuple(
            EventFacts(
                at=time_label(e.at, zone),
                what=_event_what(e),
                who=who(e.actor),
                # a failed portal attempt may be a stranger's: its address is not the employer's
                address=""
                if for_employer and (e.actor or "").startswith("portail:")
                else e.address or "",
            )
            for e in visible
        ),
        downloads=sum(1 for e in events if e.event == "downloaded"),
        chain_hash=upto.hash if upto is not None else "—",
        kit_last_hash=events[-1].hash if events else "—",
        kit_events=len(events),
        frozen=False,
        browser_signatures=browser_signing_facts(events, zone),
        prerequisites_override=_prerequisites_override(events),  # hE
    )


def archived_facts(rec: ArchiveRecord, *, zone: str = DEFAULT_TIMEZONE) -> ArchivedFacts:
    return ArchivedFacts(
        title=_title(rec.kind),
        key=rec.key,
        sha256=rec.sha256,
        size=rec.size,
        archived_at=time_label(rec.archived_at, zone),
    )


# -- the PDF --------------------------------------------------------------------------------


def render_proof(facts: ProofFacts, *, template_set_name: str = "default") -> bytes:
    """The certificate as PDF/A-2b, with the kit's fonts and stylesheet (same bytes for the same
    facts: dates come from the facts, the file identifier from the content)."""
    templates = template_set(template_set_name)
    html = templates.env.get_template("proof.html").render(proof=facts)
    document = HTML(string=html, base_url=str(templates.html_dir) + "/").render(
        stylesheets=[templates.stylesheet], font_config=templates.fonts
    )
    return document.write_pdf(pdf_variant="pdf/a-2b")


def make_proof(
    kit: Kit, *, documents: ObjectStore, zone: str = DEFAULT_TIMEZONE, audience: Audience = "staff"
) -> bytes:
    """The certificate of the kit as it stands now (the audit chain's last event), for
    `audience` (`staff`, `cdg` or `employer`: see Audience)."""
    return render_proof(
        gather_facts(
            kit,
            documents=documents,
            zone=zone,
            made_at=utcnow().replace(microsecond=0),
            audience=audience,
        ),
        template_set_name=kit.convention.template_set,
    )


def archived_proof(
    kit: Kit,
    *,
    documents: ObjectStore,
    pieces: Sequence[ArchiveRecord],
    manifest: ArchivedFacts,
    zone: str = DEFAULT_TIMEZONE,
) -> bytes:
    """The certificate archived with the manifest, frozen at the kit's last piece archiving
    event: a re-run of the archive job rebuilds the same bytes."""
    archiving = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.kit_id == kit.id, AuditEvent.event == "archived")
        .order_by(AuditEvent.id)
    ).all()
    piece_events = [e for e in archiving if (e.details or {}).get("kind") not in (MANIFEST, PROOF)]
    upto = piece_events[-1] if piece_events else None
    archived = [archived_facts(p, zone=zone) for p in sorted(pieces, key=lambda p: p.id)]
    facts = gather_facts(
        kit, documents=documents, zone=zone, upto=upto, archived=[*archived, manifest]
    )
    facts = replace(facts, frozen=True, state=labels.KIT_STATE_SENTENCES[ARCHIVED])
    return render_proof(facts, template_set_name=kit.convention.template_set)
