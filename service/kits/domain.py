"""Issuing kits: references, access codes, rendering, storage, supersession."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update

from service import labels
from service.accounts.auth import Principal
from service.audit.domain import record
from service.errors import InvalidInput, NotFound, Unavailable
from service.extensions import db
from service.kits import lifecycle
from service.kits.lifecycle import OPEN_STATES, SUPERSEDED
from service.kits.models import Kit, KitCounter, KitDocument
from service.kits.render import (
    DOCUMENT_KINDS,
    CdgData,
    ConventionData,
    EmployerData,
    KitInput,
    RenderedKit,
    kit_zip,
    render_kit,
)
from service.reference.domain import can_see_employer, convention_options
from service.reference.models import Cdg, Convention, Employer
from service.timeutil import local, utcnow
from storage import NewObject, ObjectNotFound, ObjectStore

LOGGER = logging.getLogger(__name__)
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: no 0/O, 1/I/L: 31 symbols; 16 of them carry 79 bits
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 16


def new_access_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_access_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_access_code(code: str) -> str:
    return hashlib.sha256(normalize_access_code(code).encode()).hexdigest()


def next_reference(cdg_code: str, year: int) -> str:
    """`PSC-81-2025-000123`: a per-CDG, per-year sequence, safe under concurrency."""
    return reserve_references(cdg_code, year, 1)[0]


def reserve_references(cdg_code: str, year: int, count: int) -> list[str]:
    """`count` consecutive references of the per-CDG, per-year sequence, in one counter update
    (a campaign reserves them up front). A reference never issued leaves a gap; none is reused."""
    if count <= 0:
        return []
    # one statement once the counter exists: the row stays locked until the commit
    last = db.session.execute(
        update(KitCounter)
        .where(KitCounter.cdg_code == cdg_code, KitCounter.year == year)
        .values(last=KitCounter.last + count)
        .returning(KitCounter.last)
    ).scalar_one_or_none()
    if last is None:  # the year's first: a concurrent first insert fails on the primary key
        db.session.add(KitCounter(cdg_code=cdg_code, year=year, last=count))
        db.session.flush()
        last = count
    first = last - count + 1
    return [f"PSC-{cdg_code}-{year}-{n:06d}" for n in range(first, last + 1)]


def local_today(zone: str | None = None) -> date:
    """The day of issue, as the documents date it: today in the readers' time zone
    (`TIMEZONE`, Europe/Paris by default)."""
    return local(utcnow(), zone or labels.zone_name()).date()


#: the former name (Paris was the only zone)
paris_today = local_today


def first_of_month_from(day: date) -> date:
    """The first day of a month on or after `day`."""
    if day.day == 1:
        return day
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def cover_start(
    employer: Employer,
    *,
    issued_on: date,
    requested: date | None = None,
    override_reason: str | None = None,
) -> date:
    """The start of cover a kit states: the first day of a month, within the convention, never
    before the deliberation, and never before the kit is issued unless a reason is given.

    Without a request: the employer's effective date, moved to the first of a month on or after
    the day of issue.
    """
    convention = employer.convention
    period = f"du {convention.starts_on:%d/%m/%Y} au {convention.ends_on:%d/%m/%Y}"
    if requested is None:
        earliest = max(employer.joins_on, employer.deliberation_on, convention.starts_on, issued_on)
        start = first_of_month_from(earliest)
        if start > convention.ends_on:
            raise InvalidInput(
                f"Aucun début de garantie possible dans la période de la convention ({period}).",
                code="cover_outside_convention",
                field="cover_starts_on",
            )
        return start
    if requested.day != 1:
        raise InvalidInput(
            "La garantie commence le premier jour d'un mois.",
            code="cover_not_first_of_month",
            field="cover_starts_on",
        )
    if not convention.starts_on <= requested <= convention.ends_on:
        raise InvalidInput(
            f"Le début de la garantie doit être dans la période de la convention ({period}).",
            code="cover_outside_convention",
            field="cover_starts_on",
        )
    if requested < employer.deliberation_on:
        raise InvalidInput(
            "La garantie ne peut commencer avant la délibération de la collectivité "
            f"({employer.deliberation_on:%d/%m/%Y}).",
            code="cover_before_deliberation",
            field="cover_starts_on",
        )
    if requested < issued_on and not (override_reason or "").strip():
        raise InvalidInput(
            "La garantie ne peut commencer avant l'émission du kit sans motif "
            "(indiquez-le dans « override_reason »).",
            code="cover_in_past",
            field="cover_starts_on",
        )
    return requested


def convention_data(convention: Convention) -> ConventionData:
    """What the templates read of a convention (kits and the CDG's published documents)."""
    return ConventionData(
        reference=convention.reference,
        insurer=convention.insurer,
        manager=convention.manager,
        starts_on=convention.starts_on,
        ends_on=convention.ends_on,
        base_rate=Decimal(convention.base_rate),
        cdg_fee_rate=Decimal(convention.cdg_fee_rate),
        options=tuple(convention_options(convention)),
        template_set=convention.template_set,
        insurer_legal_form=convention.insurer_legal_form,
        insurer_capital=None
        if convention.insurer_capital is None
        else Decimal(convention.insurer_capital),
        insurer_register=convention.insurer_register,
        insurer_address=convention.insurer_address,
        regime=convention.regime,
    )


def kit_input(
    employer: Employer,
    *,
    reference: str,
    access_code: str,
    issued_on: date,
    code_days: int,
    portal_url: str,
    cover_starts_on: date | None = None,
) -> KitInput:
    """What a kit's documents say. `cover_starts_on` defaults to `cover_start`'s choice."""
    convention = employer.convention
    if cover_starts_on is None:
        cover_starts_on = cover_start(employer, issued_on=issued_on)
    return KitInput(
        reference=reference,
        access_code=access_code,
        issued_on=issued_on,
        cover_starts_on=cover_starts_on,
        access_code_expires_on=issued_on + timedelta(days=code_days),
        portal_url=portal_url,
        timezone=labels.zone_name(),
        cdg=CdgData(employer.cdg.code, employer.cdg.name, employer.cdg.email),
        convention=convention_data(convention),
        employer=EmployerData(
            siret=employer.siret,
            name=employer.name,
            kind=employer.kind,
            kind_label=labels.employer_kind(employer.kind),
            address=employer.address,
            email=employer.email,
            headcount=employer.headcount,
            cst_opinion_on=employer.cst_opinion_on,
            deliberation_on=employer.deliberation_on,
            joins_on=employer.joins_on,
            contribution=dict(employer.contribution),
            signatory_gender=employer.signatory_gender,
        ),
    )


@dataclass(frozen=True)
class IssuedKit:
    kit: Kit
    access_code: str


@dataclass(frozen=True)
class PreparedKit:
    employer_id: int
    data: KitInput
    #: why staff chose a start of cover before the day of issue (audited), if they did
    override_reason: str | None = None


def prepare_kit(
    employer: Employer,
    *,
    code_days: int,
    portal_url: str,
    today: date | None = None,
    cover_starts_on: date | None = None,
    override_reason: str | None = None,
    reference: str | None = None,
) -> PreparedKit:
    """`reference`: one reserved beforehand (a campaign's); otherwise the next of the sequence."""
    today = today or local_today()
    cover = cover_start(
        employer, issued_on=today, requested=cover_starts_on, override_reason=override_reason
    )
    reference = reference or next_reference(employer.cdg.code, today.year)
    data = kit_input(
        employer,
        reference=reference,
        access_code=new_access_code(),
        issued_on=today,
        code_days=code_days,
        portal_url=portal_url,
        cover_starts_on=cover,
    )
    reason = (override_reason or "").strip() if cover < today else None
    return PreparedKit(employer.id, data, reason or None)


def _kit_prefix(data: KitInput) -> str:
    return f"kits/{data.cdg.code}/{data.employer.siret}/{data.reference}"


def store_kit(
    prepared: PreparedKit, rendered: RenderedKit, *, store: ObjectStore, actor: str
) -> IssuedKit:
    """Write the rendered files, then record the kit; open kits of the employer are superseded.

    Objects are written before the rows, all together, and are durable when `put_many` returns
    (the local store syncs the files and their folders): a crash in between leaves unreferenced
    objects under a reference that is never reused, never a row pointing to nothing.
    """
    data = prepared.data
    prefix = _kit_prefix(data)
    employer = db.session.get(Employer, prepared.employer_id)
    if employer is None:
        raise NotFound("Employeur introuvable.", code="unknown_employer")
    meta = {"kit-reference": data.reference, "siret": data.employer.siret}
    objects = []
    for doc in rendered.documents:
        kind_meta = {**meta, "kind": doc.kind}
        objects.append(NewObject(f"{prefix}/{doc.kind}.pdf", doc.pdf, PDF, kind_meta))
        if doc.docx is not None:
            objects.append(NewObject(f"{prefix}/{doc.kind}.docx", doc.docx, DOCX, kind_meta))
    objects.append(NewObject(f"{prefix}/bundle.pdf", rendered.bundle, PDF))
    # one round of writes: on disk for good before the rows that point to them are committed
    stored = {info.key: info for info in store.put_many(objects)}
    documents = []
    for position, doc in enumerate(rendered.documents):
        pdf_key = f"{prefix}/{doc.kind}.pdf"
        docx_key = f"{prefix}/{doc.kind}.docx" if doc.docx is not None else None
        documents.append(
            KitDocument(
                kind=doc.kind,
                position=position,
                title=doc.title,
                requires_signature=doc.requires_signature,
                pdf_key=pdf_key,
                sha256=stored[pdf_key].sha256 or "",
                size=len(doc.pdf),
                pages=doc.pages,
                docx_key=docx_key,
                docx_sha256=stored[docx_key].sha256 if docx_key else None,
                insurer_box=list(doc.insurer_box) if doc.insurer_box else None,
            )
        )
    bundle = stored[f"{prefix}/bundle.pdf"]

    now = utcnow()
    # the ZIP is made again at each download (`zip_of`): only its fingerprint is kept
    archive = kit_zip(
        data.reference,
        [(doc.title, doc.pdf, doc.docx) for doc in rendered.documents],
        rendered.bundle,
        dated=data.issued_on,
    )
    kit = Kit(
        reference=data.reference,
        employer_id=employer.id,
        convention_id=employer.convention_id,
        access_code_hash=hash_access_code(data.access_code),
        access_code_expires_at=now + (data.access_code_expires_on - data.issued_on),
        bundle_key=bundle.key,
        bundle_sha256=bundle.sha256 or "",
        zip_key="",
        issued_on=data.issued_on,
        zip_sha256=hashlib.sha256(archive).hexdigest(),
        issued_by=actor,
        issued_at=now,
        status_changed_at=now,
        cover_starts_on=data.cover_starts_on,
        documents=documents,
    )
    db.session.add(kit)
    db.session.flush()
    replaced = db.session.scalars(
        select(Kit)
        .where(Kit.employer_id == employer.id, Kit.id != kit.id, Kit.status.in_(OPEN_STATES))
        .order_by(Kit.id)
        .with_for_update()
    ).all()
    for old in replaced:
        previous = lifecycle.supersede(old, by=kit, at=now)
        record(
            "kit_superseded",
            actor=actor,
            kit_id=old.id,
            siret=employer.siret,
            details={
                "reference": old.reference,
                "previous_status": previous,
                "superseded_by": kit.reference,
                "superseded_by_id": kit.id,
            },
        )
    record(
        "kit_issued",
        actor=actor,
        kit_id=kit.id,
        siret=employer.siret,
        details={
            "reference": kit.reference,
            "cover_starts_on": data.cover_starts_on.isoformat(),
            "documents": {d.kind: d.sha256 for d in documents},
        },
    )
    if prepared.override_reason:
        record(
            "cover_start_overridden",
            actor=actor,
            kit_id=kit.id,
            siret=employer.siret,
            details={
                "reference": kit.reference,
                "cover_starts_on": data.cover_starts_on.isoformat(),
                "issued_on": data.issued_on.isoformat(),
                "reason": prepared.override_reason,
            },
        )
    return IssuedKit(kit, data.access_code)


def _issued_file(kit: Kit, store: ObjectStore, key: str, sha256: str | None) -> bytes:
    """A file of the kit as issued: 503 `kit_files_altered` (logged as an error) when the store
    lost it or holds other bytes."""
    try:
        data = store.get(key)
    except ObjectNotFound:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        LOGGER.error(
            "kit %s: %s %s in the store",
            kit.reference,
            key,
            "missing" if data is None else "altered",
        )
        raise Unavailable(
            "Les fichiers du kit ne correspondent plus à ceux émis : ils ne sont pas servis "
            "(l'incident est journalisé ; signalez-le à l'assureur).",
            code="kit_files_altered",
        )
    return data


def zip_of(kit: Kit, *, store: ObjectStore) -> tuple[bytes, str]:
    """The kit's ZIP and its SHA-256, made again from the kit's stored files, each checked
    against the fingerprint recorded at issue (kits issued before migration 0016: their ZIP
    object, checked the same way).

    503 `kit_files_altered` when a file is missing or altered: nothing is served that differs
    from what was issued. The ZIP is the one issued (its SHA-256 recorded then) unless its
    format changed since (a Python upgrade): its files are the issued ones, a warning says so."""
    if kit.zip_key:
        data = _issued_file(kit, store, kit.zip_key, kit.zip_sha256)
        return data, kit.zip_sha256
    archive = kit_zip(
        kit.reference,
        [
            (
                doc.title,
                _issued_file(kit, store, doc.pdf_key, doc.sha256),
                _issued_file(kit, store, doc.docx_key, doc.docx_sha256) if doc.docx_key else None,
            )
            for doc in kit.documents  # in their order (the relationship's)
        ],
        _issued_file(kit, store, kit.bundle_key, kit.bundle_sha256),
        dated=kit.issued_on or local(kit.issued_at, labels.zone_name()).date(),
    )
    sha256 = hashlib.sha256(archive).hexdigest()
    if sha256 != kit.zip_sha256:
        LOGGER.warning(
            "kit %s: its ZIP's format changed since its issue (files intact)", kit.reference
        )
    return archive, sha256


def issue_kit(
    employer: Employer,
    *,
    store: ObjectStore,
    actor: str,
    code_days: int,
    portal_url: str,
    cover_starts_on: date | None = None,
    override_reason: str | None = None,
) -> IssuedKit:
    prepared = prepare_kit(
        employer,
        code_days=code_days,
        portal_url=portal_url,
        cover_starts_on=cover_starts_on,
        override_reason=override_reason,
    )
    return store_kit(prepared, render_kit(prepared.data), store=store, actor=actor)


def employers_without_kit(cdg_code: str) -> list[Employer]:
    has_kit = select(Kit.employer_id).where(Kit.status != SUPERSEDED)
    return list(
        db.session.scalars(
            select(Employer)
            .join(Cdg, Employer.cdg_id == Cdg.id)
            .where(Cdg.code == cdg_code, Employer.id.not_in(has_kit))
            .order_by(Employer.name)
        )
    )


def get_kit(kit_id: int, *, principal: Principal) -> Kit:
    kit = db.session.get(Kit, kit_id)
    if kit is None or not can_see_employer(principal, kit.employer):
        raise NotFound("Kit introuvable.", code="unknown_kit")
    return kit


def get_document(kit: Kit, kind: str) -> KitDocument:
    if kind not in DOCUMENT_KINDS:
        raise NotFound(f"Document inconnu : « {kind} ».", code="unknown_document")
    for doc in kit.documents:
        if doc.kind == kind:
            return doc
    raise NotFound("Document introuvable.", code="unknown_document")


def require_docx(doc: KitDocument) -> str:
    if doc.docx_key is None:
        raise NotFound(
            "Ce document n'existe qu'en PDF : seules les pièces contractuelles sont modifiables.",
            code="no_docx_version",
        )
    return doc.docx_key


def current_kit(employer: Employer) -> Kit | None:
    return db.session.scalar(
        select(Kit)
        .where(Kit.employer_id == employer.id, Kit.status != SUPERSEDED)
        .order_by(Kit.issued_at.desc(), Kit.id.desc())
        .limit(1)
    )


def employers_with_current_kit(cdg_code: str) -> list[tuple[Employer, Kit | None]]:
    """Every employer of a CDG with its current (latest not superseded) kit, by name."""
    cdg = db.session.scalar(select(Cdg).where(Cdg.code == cdg_code))
    if cdg is None:
        raise NotFound("CDG inconnu.", code="unknown_cdg")
    latest = (
        select(Kit.employer_id, func.max(Kit.id).label("kit_id"))
        .where(Kit.status != SUPERSEDED)
        .group_by(Kit.employer_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Employer, Kit)
        .outerjoin(latest, latest.c.employer_id == Employer.id)
        .outerjoin(Kit, Kit.id == latest.c.kit_id)
        .where(Employer.cdg_id == cdg.id)
        .order_by(Employer.name)
    ).all()
    return [(employer, kit) for employer, kit in rows]


CANCEL_REASON_MAX = 1000


def cancel_kit(kit_id: int, *, reason: str, principal: Principal) -> Kit:
    """Void an open kit: its access code stops working and no piece can be returned for it.

    The reason is required, kept on the kit and written to the audit trail. The caller commits.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(
            "Indiquez le motif de l'annulation.", code="cancel_reason_missing", field="reason"
        )
    if len(reason) > CANCEL_REASON_MAX:
        raise InvalidInput(
            f"Motif trop long ({CANCEL_REASON_MAX} caractères au plus).",
            code="invalid_field",
            field="reason",
        )
    kit = get_kit(kit_id, principal=principal)
    # lock the row (NO KEY UPDATE, as the returns do) so a concurrent upload or countersignature
    # sees the cancellation or finishes first
    kit = db.session.execute(
        select(Kit).where(Kit.id == kit.id).with_for_update(key_share=True)
    ).scalar_one()
    db.session.refresh(kit)
    now = utcnow()
    lifecycle.cancel(kit, actor=principal.actor, reason=reason, at=now)
    # the access code no longer opens the portal, even before its expiry
    kit.access_code_expires_at = now
    record(
        "kit_cancelled",
        actor=principal.actor,
        kit_id=kit.id,
        siret=kit.employer.siret,
        details={"reference": kit.reference, "reason": reason},
    )
    return kit
