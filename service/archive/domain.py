"""Archiving countersigned copies, exactly once, and serving them to the CDG.

Countersigning writes one engine job (`psc.archive.copy`) per piece in its own transaction (the
outbox); workers run them with the engine's retries, and the piece job that finds every piece
archived writes the manifest's job, which archives the manifest and the proof certificate, then
marks the kit archived. A job uploads its object under retention, reads it back to check the
SHA-256 itself (S3-compatible servers do not all verify checksums), then records it. A job run
twice, or re-run after the process died between upload and database update, finds the object
already there with the right checksum and only records it: no duplicate.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from service import labels
from service.accounts.auth import Principal
from service.archive.models import ArchiveRecord
from service.audit.domain import record
from service.audit.models import AuditHead
from service.config import settings
from service.csvfile import csv_text
from service.engine.models import Job
from service.engine.outbox import enqueue
from service.errors import Conflict, InvalidInput, NotFound
from service.extensions import db
from service.formatting import siret as format_siret
from service.kits import lifecycle
from service.kits.domain import employers_with_current_kit
from service.kits.models import Kit
from service.kits.proof import PROOF, ArchivedFacts, archived_proof
from service.labels import file_name
from service.timeutil import DEFAULT_TIMEZONE, iso, utcnow
from storage import ObjectNotFound, ObjectStore, StorageError, sha256_hex

if TYPE_CHECKING:  # annotations only: the returns sit above the archive (countersigning enqueues)
    from service.returns.models import KitReturn

log = logging.getLogger(__name__)
MANIFEST = "manifest"
COPY_TASK = "psc.archive.copy"
#: a store down for a day still gets its copies: 30 s, 1 min, … then hourly
ARCHIVE_MAX_ATTEMPTS = 30


class ArchiveConflict(StorageError):
    """An object already sits at the key with other bytes (and retention forbids replacing)."""


@dataclass(frozen=True)
class ArchivePolicy:
    lock_mode: str = "GOVERNANCE"
    retention_years: int = 10
    #: the time zone of the proof certificate archived with the manifest
    timezone: str = DEFAULT_TIMEZONE


def archive_policy() -> ArchivePolicy:
    s = settings()
    return ArchivePolicy(
        lock_mode=s.archive_lock_mode,
        retention_years=s.archive_retention_years,
        timezone=s.timezone,
    )


def retain_until(ends_on: date, years: int) -> datetime:
    try:
        day = ends_on.replace(year=ends_on.year + years)
    except ValueError:  # 29 February
        day = ends_on.replace(year=ends_on.year + years, day=28)
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)


ARCHIVE_NAMES = {MANIFEST: "manifest.json", PROOF: "certificat-de-preuve.pdf"}


def archive_key(kit: Kit, kind: str) -> str:
    employer = kit.employer
    convention = "".join(c if c.isalnum() or c in "-_." else "-" for c in kit.convention.reference)
    name = ARCHIVE_NAMES.get(kind) or f"{file_name(kind)}.pdf"
    return f"{employer.cdg.code}/{convention}/{employer.siret}/{kit.reference}/{name}"


def enqueue_archive(kit: Kit, kinds: list[str]) -> None:
    """One job per piece in the caller's transaction (the countersigning one). The manifest's
    facts are frozen now, so that a re-run rebuilds byte-identical JSON; its job is written by
    the piece job that finds every piece archived (`_release_manifest`)."""
    head = db.session.get(AuditHead, 1)
    manifest = {
        "audit_last_hash": head.last_hash if head else None,
        "countersigned_at": iso(kit.countersigned_at or utcnow()),
    }
    for kind in kinds:
        enqueue(
            COPY_TASK,
            {"kind": kind, "pieces": kinds, "manifest": manifest},
            kit_id=kit.id,
            max_attempts=ARCHIVE_MAX_ATTEMPTS,
        )
    if not kinds:
        _enqueue_manifest(kit.id, [], manifest)
    db.session.flush()


def _accepted_returns(kit: Kit) -> list[KitReturn]:
    db.session.expire(kit, ["returns"])  # read them now, as a query would
    return [ret for ret in kit.returns if ret.status == "accepted"]


def _enqueue_manifest(kit_id: int, pieces: list[str], manifest: dict[str, Any]) -> None:
    enqueue(
        COPY_TASK,
        {"kind": MANIFEST, "pieces": pieces, **manifest},
        kit_id=kit_id,
        max_attempts=ARCHIVE_MAX_ATTEMPTS,
    )


def _release_manifest(kit: Kit, job: Job) -> None:
    """After a piece: once every piece of the kit is archived, write the manifest's job (sent
    after the commit). The kit's row is locked (`archive_copy`), so that of two pieces finishing
    together the second sees the first's record, and only one writes the manifest's job."""
    archived = set(
        db.session.scalars(select(ArchiveRecord.kind).where(ArchiveRecord.kit_id == kit.id))
    )
    pieces = list(job.payload.get("pieces") or [job.payload["kind"]])
    if not set(pieces) <= archived:
        return
    jobs = db.session.scalars(
        select(Job).where(Job.kit_id == kit.id, Job.task == COPY_TASK, Job.id != job.id)
    )
    if any(other.payload.get("kind") == MANIFEST for other in jobs):
        return
    _enqueue_manifest(kit.id, pieces, job.payload.get("manifest") or {})


def _source(kit: Kit, kind: str, documents: ObjectStore) -> tuple[bytes, list[str]]:
    """The countersigned copy of a piece and who signed it (employer signers, then insurer)."""
    ret = next((r for r in _accepted_returns(kit) if r.kind == kind), None)
    if ret is None or ret.countersigned_key is None:
        raise NotFound("Aucun exemplaire contresigné pour cette pièce.", code="not_countersigned")
    names = [s.get("name", "") for s in (ret.verification or {}).get("signers", [])]
    return documents.get(ret.countersigned_key), [*names, f"{kit.convention.insurer} (contreseing)"]


def _manifest(kit: Kit, job: Job, pieces: Sequence[ArchiveRecord]) -> bytes:
    employer = kit.employer
    # whether each countersigned copy is still PDF/A, as verification found (None: not known)
    pdfa = {
        ret.kind: (ret.verification or {}).get("pdfa_preserved") for ret in _accepted_returns(kit)
    }
    manifest = {
        "kit_reference": kit.reference,
        "siret": employer.siret,
        "employer": employer.name,
        "cdg": employer.cdg.code,
        "convention": kit.convention.reference,
        "insurer": kit.convention.insurer,
        "manager": kit.convention.manager,
        "countersigned_at": job.payload.get("countersigned_at"),
        "audit_last_hash": job.payload.get("audit_last_hash"),
        "documents": [
            {
                "kind": p.kind,
                "key": p.key,
                "sha256": p.sha256,
                "size": p.size,
                "signers": p.signers,
                "pdfa_preserved": pdfa.get(p.kind),
            }
            for p in sorted(pieces, key=lambda p: p.kind)
        ],
    }
    return json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode()


def _put_verified(
    store: ObjectStore,
    key: str,
    data: bytes,
    *,
    metadata: dict[str, str],
    until: datetime,
    policy: ArchivePolicy,
    content_type: str,
) -> str:
    digest = sha256_hex(data)
    try:
        existing = store.head(key)
    except ObjectNotFound:
        existing = None
    if existing is None:
        kwargs: dict[str, Any] = {}
        if hasattr(store, "bucket"):
            kwargs["lock_mode"] = policy.lock_mode
        store.put(
            key,
            data,
            sha256=digest,
            metadata=metadata,
            retain_until=until,
            content_type=content_type,
            **kwargs,
        )
    # read back: the store's own checksum claims are not trusted
    stored = store.get(key)
    if sha256_hex(stored) != digest:
        if existing is not None:
            raise ArchiveConflict(f"{key}: another object is already archived there")
        raise StorageError(f"{key}: read back with a different SHA-256")
    return digest


class ManifestWaits(StorageError):
    """The manifest's job ran before every piece was archived: it is tried again later."""


def archive_copy(
    job: Job, *, documents: ObjectStore, archive: ObjectStore, policy: ArchivePolicy
) -> ArchiveRecord:
    """Archive the copy a `psc.archive.copy` job names (a piece, or the kit's manifest with
    its proof certificate), in the job's transaction (no commit)."""
    kit = db.session.get(Kit, job.kit_id)
    if kit is None:
        raise NotFound("Kit introuvable.", code="unknown_kit")
    kind: str = job.payload["kind"]
    until = retain_until(kit.convention.ends_on, policy.retention_years)
    key = archive_key(kit, kind)
    meta = {"kit-reference": kit.reference, "siret": kit.employer.siret, "kind": kind}
    if kind == MANIFEST:
        pieces = db.session.scalars(
            select(ArchiveRecord).where(
                ArchiveRecord.kit_id == kit.id, ArchiveRecord.kind.not_in((MANIFEST, PROOF))
            )
        ).all()
        missing = set(job.payload.get("pieces") or []) - {p.kind for p in pieces}
        if missing:
            raise ManifestWaits(f"pieces not archived yet: {', '.join(sorted(missing))}")
        data, signers = _manifest(kit, job, pieces), []
        content_type = "application/json"
    else:
        data, signers = _source(kit, kind, documents)
        meta["signers"] = "; ".join(signers).encode("ascii", "replace").decode()[:1500]
        content_type = "application/pdf"
    meta["sha256"] = sha256_hex(data)
    try:
        digest = _put_verified(
            archive, key, data, metadata=meta, until=until, policy=policy, content_type=content_type
        )
    except ArchiveConflict as exc:  # retrying cannot help: staff must look
        raise Conflict(
            "Une autre copie est déjà archivée sous cette clé : archivage arrêté.",
            code="archive_conflict",
        ) from exc
    # the kit's row locked (PostgreSQL) before the audit chain's, as every kit change does;
    # held until the commit: the kit's copies are recorded one after the other
    db.session.execute(select(Kit.id).where(Kit.id == kit.id).with_for_update())
    rec = _record_copy(kit, kind, key, size=len(data), digest=digest, signers=signers, until=until)
    db.session.flush()
    if kind != MANIFEST:
        _release_manifest(kit, job)
    else:
        _archive_proof(
            kit, rec, pieces, documents=documents, archive=archive, policy=policy, until=until
        )
        lifecycle.mark_archived(kit)
        record("kit_archived", actor="system", kit_id=kit.id, sha256_after=digest)
    return rec


def _record_copy(
    kit: Kit,
    kind: str,
    key: str,
    *,
    size: int,
    digest: str,
    signers: list[str],
    until: datetime,
) -> ArchiveRecord:
    """The record of a verified copy (kept if a re-run finds it already there) and its
    `archived` event."""
    rec = db.session.scalar(select(ArchiveRecord).where(ArchiveRecord.key == key)) or ArchiveRecord(
        kit_id=kit.id,
        cdg_code=kit.employer.cdg.code,
        siret=kit.employer.siret,
        kit_reference=kit.reference,
        kind=kind,
        key=key,
        sha256=digest,
        size=size,
        signers=signers,
        retain_until=until.replace(tzinfo=None),
        archived_at=utcnow(),
    )
    db.session.add(rec)
    record(
        "archived",
        actor="system",
        kit_id=kit.id,
        sha256_after=digest,
        details={"kind": kind, "key": key},
    )
    return rec


def _archive_proof(
    kit: Kit,
    manifest: ArchiveRecord,
    pieces: Sequence[ArchiveRecord],
    *,
    documents: ObjectStore,
    archive: ObjectStore,
    policy: ArchivePolicy,
    until: datetime,
) -> ArchiveRecord:
    """The proof certificate, archived next to the manifest in the manifest's transaction (its
    bytes are frozen, so a re-run finds the same object and only records it)."""
    data = archived_proof(
        kit,
        documents=documents,
        pieces=pieces,
        manifest=ArchivedFacts(
            title="Manifeste de l'archive",
            key=manifest.key,
            sha256=manifest.sha256,
            size=manifest.size,
            archived_at="",
        ),
        zone=policy.timezone,
    )
    key = archive_key(kit, PROOF)
    meta = {
        "kit-reference": kit.reference,
        "siret": kit.employer.siret,
        "kind": PROOF,
        "sha256": sha256_hex(data),
    }
    digest = _put_verified(
        archive,
        key,
        data,
        metadata=meta,
        until=until,
        policy=policy,
        content_type="application/pdf",
    )
    return _record_copy(kit, PROOF, key, size=len(data), digest=digest, signers=[], until=until)


def pending_copies() -> list[int]:
    """The pending archive jobs, oldest first (`flask archive retry`)."""
    return list(
        db.session.scalars(
            select(Job.id).where(Job.task == COPY_TASK, Job.status == "pending").order_by(Job.id)
        )
    )


@dataclass(frozen=True)
class Fault:
    """An archived copy that is missing, unreadable or changed."""

    record_id: int
    kit_id: int
    key: str
    text: str


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    faults: list[Fault]

    @property
    def problems(self) -> list[str]:
        return [fault.text for fault in self.faults]


def verify_archive(*, archive: ObjectStore, sample: int | None = None) -> VerifyReport:
    """Re-read every archived copy (or `sample` drawn at random) and check its SHA-256."""
    ids = db.session.scalars(select(ArchiveRecord.id).order_by(ArchiveRecord.id)).all()
    if sample is not None and sample < len(ids):
        ids = sorted(random.sample(list(ids), sample))
    faults = []
    for record_id in ids:
        rec = db.session.get(ArchiveRecord, record_id)
        assert rec is not None
        try:
            digest = sha256_hex(archive.get(rec.key))
        except ObjectNotFound:
            faults.append(Fault(rec.id, rec.kit_id, rec.key, f"{rec.key} : absent de l'archive"))
            continue
        except StorageError as exc:
            faults.append(Fault(rec.id, rec.kit_id, rec.key, f"{rec.key} : illisible ({exc})"))
            continue
        if digest != rec.sha256:
            text = f"{rec.key} : empreinte {digest} au lieu de {rec.sha256}"
            faults.append(Fault(rec.id, rec.kit_id, rec.key, text))
    return VerifyReport(len(ids), faults)


def check_fixity(*, archive: ObjectStore, sample: int) -> VerifyReport:
    """Beat's sampling: `sample` copies re-read; each fault logged and recorded in the audit
    trail of its kit (`archive_fixity_failed`). The caller commits."""
    report = verify_archive(archive=archive, sample=sample)
    for fault in report.faults:
        log.error("archive fixity: %s", fault.text)
        record(
            "archive_fixity_failed",
            actor="system",
            kit_id=fault.kit_id,
            details={"key": fault.key, "record_id": fault.record_id, "problem": fault.text},
        )
    return report


# -- the CDG's side ------------------------------------------------------------------------


def list_archive(
    *, principal: Principal, cdg: str | None, siret: str | None, limit: int, after: int | None
) -> tuple[Sequence[ArchiveRecord], int | None]:
    if principal.role == "cdg":
        if cdg and cdg != principal.cdg_code:
            return [], None
        cdg = principal.cdg_code
    if not cdg:
        raise InvalidInput("Indiquez le CDG (paramètre cdg).", code="cdg_required", field="cdg")
    query = select(ArchiveRecord).where(ArchiveRecord.cdg_code == cdg)
    if siret:
        query = query.where(ArchiveRecord.siret == siret)
    if after is not None:
        query = query.where(ArchiveRecord.id > after)
    rows = db.session.scalars(query.order_by(ArchiveRecord.id).limit(limit + 1)).all()
    next_after = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_after


def get_record(record_id: int, *, principal: Principal) -> ArchiveRecord:
    rec = db.session.get(ArchiveRecord, record_id)
    if rec is None or (principal.role == "cdg" and rec.cdg_code != principal.cdg_code):
        raise NotFound("Copie archivée introuvable.", code="unknown_archive")
    return rec


def _fr_amount(value: str) -> str:
    return f"{Decimal(value):.2f}".replace(".", ",")


TRACKING_COLUMNS = [
    "SIRET",
    "Collectivité",
    "Type",
    "Effectif",
    "Statut du kit",
    "Référence du kit",
    "Émis le",
    "Signé par la collectivité le",
    "Contresigné le",
    "Archivé le",
    "Participation",
    "Montant forfaitaire",
    "Montant A",
    "Montant B",
    "Montant C",
    "Critères de modulation",
]


def tracking_csv(cdg_code: str) -> str:
    """Every employer of the CDG with its kit status: `;`-separated, for French spreadsheets.

    Cells that would start a formula are neutralised (`'=…`). The SIRET is written grouped as
    INSEE prints it, `218 100 048 00014`: with a last group of five digits no locale can read it
    as a number, so a spreadsheet keeps all fourteen digits as text (a bare 21810004800014 would
    show as 2,18E+13 and lose its digits), and no formula (`="…"`) is needed; programs reading
    the file drop the spaces.
    """
    rows = []
    for employer, kit in employers_with_current_kit(cdg_code):
        c = employer.contribution
        amounts = c.get("amounts", {}) if c["mode"] != "flat" else {}
        rows.append(
            [
                format_siret(employer.siret),
                employer.name,
                labels.employer_kind(employer.kind),
                employer.headcount,
                labels.kit_state(kit.status if kit else None),
                kit.reference if kit else "",
                labels.day(kit.issued_at if kit else None),
                labels.day(kit.employer_signed_at if kit else None),
                labels.day(kit.countersigned_at if kit else None),
                labels.day(kit.archived_at if kit else None),
                "forfaitaire" if c["mode"] == "flat" else "modulée par catégorie",
                _fr_amount(c["amount"]) if c["mode"] == "flat" else "",
                _fr_amount(amounts["A"]) if "A" in amounts else "",
                _fr_amount(amounts["B"]) if "B" in amounts else "",
                _fr_amount(amounts["C"]) if "C" in amounts else "",
                c.get("criteria", ""),
            ]
        )
    return csv_text(TRACKING_COLUMNS, rows)
