"""Archiving countersigned copies, exactly once, and serving them to the CDG.

Countersigning writes one `ArchiveJob` per piece plus one for the manifest in its own
transaction (an outbox). A job uploads its object under retention, reads it back to check the
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
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from service import labels
from service.accounts.auth import Principal
from service.archive.models import ArchiveJob, ArchiveRecord
from service.audit.domain import record
from service.audit.models import AuditHead
from service.csvfile import csv_text
from service.errors import InvalidInput, NotFound
from service.extensions import db
from service.formatting import siret as format_siret
from service.kits import lifecycle
from service.kits.domain import employers_with_current_kit
from service.kits.models import Kit
from service.kits.proof import PROOF, ArchivedFacts, archived_proof
from service.labels import file_name
from service.timeutil import DEFAULT_TIMEZONE, iso, utcnow
from storage import ObjectNotFound, ObjectStore, StorageError, StorageUnavailable, sha256_hex

if TYPE_CHECKING:  # annotations only: the returns sit above the archive (countersigning enqueues)
    from service.returns.models import KitReturn

log = logging.getLogger(__name__)
MANIFEST = "manifest"
MAX_BACKOFF = timedelta(hours=1)


class ArchiveConflict(StorageError):
    """An object already sits at the key with other bytes (and retention forbids replacing)."""


@dataclass(frozen=True)
class ArchivePolicy:
    lock_mode: str = "GOVERNANCE"
    retention_years: int = 10
    #: the time zone of the proof certificate archived with the manifest
    timezone: str = DEFAULT_TIMEZONE


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
    """Record the jobs in the caller's transaction (the countersigning one)."""
    head = db.session.get(AuditHead, 1)
    for kind in kinds:
        db.session.add(ArchiveJob(kit_id=kit.id, kind=kind, status="pending"))
    db.session.add(
        ArchiveJob(
            kit_id=kit.id,
            kind=MANIFEST,
            status="pending",
            # frozen now so that a re-run rebuilds byte-identical JSON
            payload={
                "audit_last_hash": head.last_hash if head else None,
                "countersigned_at": iso(kit.countersigned_at or utcnow()),
            },
        )
    )
    db.session.flush()


def _accepted_returns(kit: Kit) -> list[KitReturn]:
    db.session.expire(kit, ["returns"])  # read them now, as a query would
    return [ret for ret in kit.returns if ret.status == "accepted"]


def _source(kit: Kit, kind: str, documents: ObjectStore) -> tuple[bytes, list[str]]:
    """The countersigned copy of a piece and who signed it (employer signers, then insurer)."""
    ret = next((r for r in _accepted_returns(kit) if r.kind == kind), None)
    if ret is None or ret.countersigned_key is None:
        raise NotFound("Aucun exemplaire contresigné pour cette pièce.", code="not_countersigned")
    names = [s.get("name", "") for s in (ret.verification or {}).get("signers", [])]
    return documents.get(ret.countersigned_key), [*names, f"{kit.convention.insurer} (contreseing)"]


def _manifest(kit: Kit, job: ArchiveJob, pieces: Sequence[ArchiveRecord]) -> bytes:
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


def run_job(
    job: ArchiveJob, *, documents: ObjectStore, archive: ObjectStore, policy: ArchivePolicy
) -> ArchiveRecord | None:
    """Do one job; returns its record, or None when the manifest must wait for its pieces."""
    kit = job.kit
    until = retain_until(kit.convention.ends_on, policy.retention_years)
    key = archive_key(kit, job.kind)
    meta = {"kit-reference": kit.reference, "siret": kit.employer.siret, "kind": job.kind}
    if job.kind == MANIFEST:
        pieces = db.session.scalars(
            select(ArchiveRecord).where(
                ArchiveRecord.kit_id == kit.id, ArchiveRecord.kind.not_in((MANIFEST, PROOF))
            )
        ).all()
        expected = db.session.scalar(
            select(func.count())
            .select_from(ArchiveJob)
            .where(ArchiveJob.kit_id == kit.id, ArchiveJob.kind != MANIFEST)
        )
        if len(pieces) < (expected or 0):
            return None
        data, signers = _manifest(kit, job, pieces), []
        content_type = "application/json"
    else:
        data, signers = _source(kit, job.kind, documents)
        meta["signers"] = "; ".join(signers).encode("ascii", "replace").decode()[:1500]
        content_type = "application/pdf"
    meta["sha256"] = sha256_hex(data)
    digest = _put_verified(
        archive, key, data, metadata=meta, until=until, policy=policy, content_type=content_type
    )
    existing = db.session.scalar(select(ArchiveRecord).where(ArchiveRecord.key == key))
    rec = existing or ArchiveRecord(
        kit_id=kit.id,
        cdg_code=kit.employer.cdg.code,
        siret=kit.employer.siret,
        kit_reference=kit.reference,
        kind=job.kind,
        key=key,
        sha256=digest,
        size=len(data),
        signers=signers,
        retain_until=until.replace(tzinfo=None),
        archived_at=utcnow(),
    )
    db.session.add(rec)
    job.status, job.done_at, job.last_error = "done", utcnow(), None
    record(
        "archived",
        actor="system",
        kit_id=kit.id,
        sha256_after=digest,
        details={"kind": job.kind, "key": key},
    )
    if job.kind == MANIFEST:
        _archive_proof(
            kit, rec, pieces, documents=documents, archive=archive, policy=policy, until=until
        )
        lifecycle.mark_archived(kit)
        record("kit_archived", actor="system", kit_id=kit.id, sha256_after=digest)
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
    rec = db.session.scalar(select(ArchiveRecord).where(ArchiveRecord.key == key)) or ArchiveRecord(
        kit_id=kit.id,
        cdg_code=kit.employer.cdg.code,
        siret=kit.employer.siret,
        kit_reference=kit.reference,
        kind=PROOF,
        key=key,
        sha256=digest,
        size=len(data),
        signers=[],
        retain_until=until.replace(tzinfo=None),
        archived_at=utcnow(),
    )
    db.session.add(rec)
    record(
        "archived",
        actor="system",
        kit_id=kit.id,
        sha256_after=digest,
        details={"kind": PROOF, "key": key},
    )
    return rec


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=30 * 2 ** min(attempts, 10)), MAX_BACKOFF)


def run_pending(
    *,
    documents: ObjectStore,
    archive: ObjectStore,
    policy: ArchivePolicy,
    kit_id: int | None = None,
    ignore_schedule: bool = False,
    stop_when_unavailable: bool = False,
) -> tuple[int, int]:
    """Run due jobs (pieces before manifests); (done, failed). Never raises storage errors.

    `stop_when_unavailable`: the first job that finds a store unreachable ends the run (the
    others stay pending, untouched), instead of each waiting for its own timeout."""
    done = failed = 0
    query = select(ArchiveJob.id).where(ArchiveJob.status == "pending")
    if kit_id is not None:
        query = query.where(ArchiveJob.kit_id == kit_id)
    if not ignore_schedule:
        query = query.where(ArchiveJob.next_attempt_at <= utcnow())
    ids = db.session.scalars(
        query.order_by((ArchiveJob.kind == MANIFEST).asc(), ArchiveJob.id)
    ).all()
    unavailable: StorageUnavailable | None = None
    for job_id in ids:
        if unavailable is not None:  # not tried again: it would only wait for the same timeout
            failed += _record_failure(job_id, unavailable)
            continue
        job = db.session.execute(
            select(ArchiveJob)
            .where(ArchiveJob.id == job_id, ArchiveJob.status == "pending")
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if job is None:
            continue
        try:
            result = run_job(job, documents=documents, archive=archive, policy=policy)
            if result is None:
                db.session.rollback()
                continue
            db.session.commit()
            done += 1
        except (StorageError, NotFound, OSError) as exc:
            db.session.rollback()
            failed += _record_failure(job_id, exc)
            if stop_when_unavailable and isinstance(exc, StorageUnavailable):
                unavailable = exc
    return done, failed


def _record_failure(job_id: int, exc: Exception) -> int:
    """Note the failure on a pending job and schedule its next attempt; 1 if noted."""
    job = db.session.get(ArchiveJob, job_id)
    if job is None or job.status != "pending":
        return 0
    job.attempts += 1
    job.last_error = f"{type(exc).__name__}: {exc}"[:500]
    job.next_attempt_at = utcnow() + _backoff(job.attempts)
    if isinstance(exc, ArchiveConflict):
        job.status = "failed"
    db.session.commit()
    log.warning("archive job %s (%s) failed: %s", job.id, job.kind, job.last_error)
    return 1


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    problems: list[str]


def verify_archive(*, archive: ObjectStore, sample: int | None = None) -> VerifyReport:
    ids = db.session.scalars(select(ArchiveRecord.id).order_by(ArchiveRecord.id)).all()
    if sample is not None and sample < len(ids):
        ids = sorted(random.sample(list(ids), sample))
    problems = []
    for record_id in ids:
        rec = db.session.get(ArchiveRecord, record_id)
        assert rec is not None
        try:
            digest = sha256_hex(archive.get(rec.key))
        except ObjectNotFound:
            problems.append(f"{rec.key} : absent de l'archive")
            continue
        except StorageError as exc:
            problems.append(f"{rec.key} : illisible ({exc})")
            continue
        if digest != rec.sha256:
            problems.append(f"{rec.key} : empreinte {digest} au lieu de {rec.sha256}")
    return VerifyReport(len(ids), problems)


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
