"""Portal sessions, signed returns, review decisions and the insurer's countersignature."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from service import labels
from service.accounts.auth import Principal, issue_token
from service.archive.domain import enqueue_archive
from service.audit.domain import record
from service.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
)
from service.errors import Unauthorized as ServiceUnauthorized
from service.extensions import db
from service.kits import lifecycle, notify
from service.kits.domain import current_kit, get_document, hash_access_code
from service.kits.lifecycle import CANCELLED, ISSUED, OPEN_STATES
from service.kits.models import Kit, KitDocument
from service.ratelimit import Rule, limiter
from service.reference.models import Employer
from service.returns.models import KitReturn
from service.timeutil import utcnow
from signing.countersign import SignatureBox, SigningKey, countersign
from signing.errors import Refused, SigningError, TimestampUnavailable, VerificationBusy
from signing.sandbox import Limits, run_limited
from signing.verify import TrustSettings, Verdict, verify_return
from storage import ObjectNotFound, ObjectStore, StorageError, sha256_hex

log = logging.getLogger(__name__)
SESSION_HOURS = 2
# Failed portal sign-ins (see README, "Portal throttling"). Windows of growing length make a
# stepped backoff that lifts with time; nothing is ever locked for good. A SIRET's counters are
# kept per address, so a stranger guessing a SIRET never gets the real employer refused from
# its own address; an access code has 31^16 (about 2^79) values, so spreading guesses over many
# addresses gains nothing.
PORTAL_ADDRESS = Rule.of("portal-address", "20/15 minutes; 100/day")
PORTAL_SIRET_ADDRESS = Rule.of("portal-siret-address", "5/15 minutes; 10/hour; 20/day")
# every address together, per SIRET: never refuses, tells staff that someone keeps guessing
PORTAL_SIRET_WATCH = Rule.of("portal-siret-watch", "5/15 minutes")
_DUMMY_HASH = hash_access_code("AAAAAAAAAAAAAAAA")


# -- portal sessions -----------------------------------------------------------------------


def _throttle(siret: str, address: str) -> list[tuple[Rule, tuple[str, ...]]]:
    """The limits a portal attempt counts against; the SIRET's generation changes when staff
    clear its limits, which drops the counters of every address at once."""
    generation = str(limiter().generation(f"portal-siret:{siret}"))
    return [
        (PORTAL_ADDRESS, (address,)),
        (PORTAL_SIRET_ADDRESS, (siret, generation, address)),
    ]


def _check_throttle(rules: list[tuple[Rule, tuple[str, ...]]]) -> None:
    for rule, ids in rules:
        limiter().check(rule, *ids)


def _fail(siret: str, rules: list[tuple[Rule, tuple[str, ...]]]) -> None:
    for rule, ids in rules:
        limiter().hit(rule, *ids)
    limiter().hit(PORTAL_SIRET_WATCH, siret, str(limiter().generation(f"portal-siret:{siret}")))


def portal_throttled(siret: str) -> bool:
    """Whether wrong codes keep coming for this SIRET (from any address): staff see it. With
    the limiter's store unreachable, the page shows nothing rather than failing."""
    try:
        generation = str(limiter().generation(f"portal-siret:{siret}"))
        return limiter().retry_after(PORTAL_SIRET_WATCH, siret, generation) is not None
    except Unavailable:
        return False


@dataclass(frozen=True)
class PortalSession:
    """An open portal session: `siret` is the normalised one (14 digits) the session is for;
    `token` is the employer's bearer token, None when none was asked for (the pages)."""

    token: str | None
    expires_at: datetime
    kit_id: int
    siret: str


def open_portal_session(
    *, siret: str, access_code: str, address: str | None, api_token: bool = True
) -> PortalSession:
    """Exchange SIRET + access code for an employer token; never says whether the SIRET exists.

    429 with `Retry-After` while this address, or this SIRET from this address, is throttled;
    the right code from another address is always accepted. The pages keep their own server
    session (`api_token=False`): no bearer token is issued for them."""
    now = utcnow()
    siret = "".join(ch for ch in str(siret) if ch in "0123456789")[:14]
    rules = _throttle(siret, address or "inconnue")
    _check_throttle(rules)
    employer = db.session.scalar(select(Employer).where(Employer.siret == siret))
    kit = current_kit(employer) if employer is not None else None
    candidate = kit.access_code_hash if kit is not None else _DUMMY_HASH
    matches = hmac.compare_digest(candidate, hash_access_code(access_code or ""))
    if kit is None or not matches or kit.access_code_expires_at <= now:
        expired = kit is not None and matches
        _fail(siret, rules)
        cancelled = expired and kit is not None and kit.status == CANCELLED
        record(
            "portal_failed",
            actor=f"portail:{siret}",
            kit_id=kit.id if kit else None,
            siret=siret if employer else None,
            address=address,
            details={"reason": "cancelled" if cancelled else "expired" if expired else "mismatch"},
        )
        db.session.commit()
        if cancelled:
            raise ServiceUnauthorized(
                "Ce kit a été annulé : votre gestionnaire vous enverra un nouveau kit.",
                code="kit_cancelled",
            )
        if expired:
            raise ServiceUnauthorized(
                "Ce code d'accès a expiré : demandez un nouveau kit à votre gestionnaire.",
                code="access_code_expired",
            )
        raise ServiceUnauthorized("SIRET ou code d'accès incorrect.", code="invalid_credentials")
    rule, ids = rules[1]  # this address knows the code: its own guesses no longer count
    limiter().clear(rule, *ids)
    expires = now + timedelta(hours=SESSION_HOURS)
    token = issue_token(role="employer", siret=siret, expires_at=expires) if api_token else None
    record("portal_session", actor=f"employer:{siret}", kit_id=kit.id, siret=siret, address=address)
    db.session.commit()
    return PortalSession(token, expires, kit.id, siret)


def unlock_portal(siret: str, *, principal: Principal) -> None:
    """Staff clear the SIRET's limits, for every address (the address limits stay)."""
    limiter().generation(f"portal-siret:{siret}", bump=True)
    record("portal_unlocked", actor=principal.actor, siret=siret)


# -- returns -------------------------------------------------------------------------------


def _lock_kit(kit_id: int) -> Kit:
    """Serialize work on one kit. NO KEY UPDATE, so that inserting rows that reference the kit
    (returns, audit events) in other transactions never waits on it: no lock-order deadlock
    with the audit trail's head row."""
    kit = db.session.execute(
        select(Kit).where(Kit.id == kit_id).with_for_update(key_share=True)
    ).scalar_one()
    db.session.refresh(kit)
    return kit


def _accepted(kit: Kit, kind: str) -> KitReturn | None:
    return db.session.scalar(
        select(KitReturn).where(
            KitReturn.kit_id == kit.id, KitReturn.kind == kind, KitReturn.status == "accepted"
        )
    )


def _signable(kit: Kit, kind: str) -> KitDocument:
    doc = get_document(kit, kind)
    if not doc.requires_signature:
        raise InvalidInput(
            "Ce document ne se signe pas : seuls les conditions particulières et la convention "
            "d'adhésion reviennent signés.",
            code="signature_not_expected",
        )
    lifecycle.refuse_unless_open(kit)
    return doc


@dataclass(frozen=True)
class UploadQuota:
    """Uploads a kit may receive in an hour, in number and in bytes (0: no limit)."""

    uploads: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class ReturnContext:
    store: ObjectStore
    trust: TrustSettings
    max_bytes: int
    limits: Limits = field(default_factory=Limits)
    quota: UploadQuota = field(default_factory=UploadQuota)


QUARANTINE = "quarantine/"
RETURNS = "returns/"
QUOTA_WINDOW = timedelta(hours=1)


def _check_quota(kit: Kit, size: int, quota: UploadQuota) -> None:
    """The uploads of the last hour on this kit, refused or not, plus this one, within quota.

    Checked before the verification (a cheap early refusal), then again under the kit's lock,
    where the count is exact: uploads verified side by side all pass the first count, and only
    the lock orders their rows."""
    if not quota.uploads and not quota.bytes:
        return
    count, total = db.session.execute(
        select(func.count(KitReturn.id), func.coalesce(func.sum(KitReturn.size), 0)).where(
            KitReturn.kit_id == kit.id, KitReturn.uploaded_at > utcnow() - QUOTA_WINDOW
        )
    ).one()
    if (quota.uploads and count + 1 > quota.uploads) or (
        quota.bytes and total + size > quota.bytes
    ):
        limits = []
        if quota.uploads:
            limits.append(f"{quota.uploads} fichier{'s' if quota.uploads > 1 else ''}")
        if quota.bytes:
            limits.append(f"{quota.bytes / (1024 * 1024):.0f} Mo")
        raise TooManyRequests(
            f"Trop de dépôts pour ce kit en une heure ({' ou '.join(limits)} au plus) : "
            "réessayez plus tard ou contactez votre gestionnaire.",
            code="upload_quota_exceeded",
        )


def _discard(store: ObjectStore, key: str) -> None:
    """Delete a copy no row refers to; a failure is left to `sweep_uploads`."""
    try:
        store.delete(key)
    except ObjectNotFound:
        pass
    except StorageError:
        log.warning("could not delete %s now: the sweep will", key)


def receive_return(
    kit: Kit,
    kind: str,
    data: bytes,
    *,
    principal: Principal,
    address: str | None,
    ctx: ReturnContext,
) -> KitReturn:
    """Keep the bytes, verify them, record the verdict. Refusals raise after being recorded."""
    doc = _signable(kit, kind)
    if len(data) > ctx.max_bytes:
        raise PayloadTooLarge(
            f"Fichier trop volumineux : {ctx.max_bytes // (1024 * 1024)} Mo au plus.",
        )
    if not data:
        raise InvalidInput("Le fichier envoyé est vide.", code="empty_file", field="file")
    _check_quota(kit, len(data), ctx.quota)
    digest = sha256_hex(data)
    token = uuid.uuid4().hex[:12]
    quarantine_key = f"{QUARANTINE}{kit.reference}/{kind}/{token}.pdf"
    ctx.store.put(quarantine_key, data, sha256=digest, content_type="application/pdf")
    # Whatever happens next, no copy may stay without a row: the quarantine copy goes once
    # the row refers to the verified copy, every copy goes when no row was committed.
    kept: str | None = None
    try:
        ret, refusal = _verify_and_record(
            kit,
            doc,
            data,
            digest=digest,
            token=token,
            principal=principal,
            address=address,
            ctx=ctx,
        )
        kept = ret.storage_key
    finally:
        for key in {quarantine_key, f"{RETURNS}{kit.reference}/{kind}/{token}.pdf"} - {kept}:
            _discard(ctx.store, key)
    if refusal is not None:
        raise refusal
    return ret


def _verify_and_record(
    kit: Kit,
    doc: KitDocument,
    data: bytes,
    *,
    digest: str,
    token: str,
    principal: Principal,
    address: str | None,
    ctx: ReturnContext,
) -> tuple[KitReturn, Refused | None]:
    """Verify the quarantined copy, keep the verified one, commit the row and its events."""
    kind = doc.kind
    quarantine_key = f"{QUARANTINE}{kit.reference}/{kind}/{token}.pdf"
    issued = ctx.store.get(doc.pdf_key)
    refusal: Refused | None = None
    verdict: Verdict | None = None
    try:
        verdict = run_limited(
            verify_return, data, issued, marker=kit.reference, trust=ctx.trust, limits=ctx.limits
        )
    except Refused as exc:
        refusal = exc
    except VerificationBusy:
        # no verdict on the file: nothing of it is kept, the sender tries again
        ctx.store.delete(quarantine_key)
        raise

    kit = _lock_kit(kit.id)
    try:
        _check_quota(kit, len(data), ctx.quota)
    except TooManyRequests:
        db.session.rollback()  # releases the lock; the caller discards every copy
        raise
    if refusal is None and _accepted(kit, kind) is not None:
        refusal = Refused(
            "already_accepted", "Une pièce signée a déjà été acceptée pour ce document."
        )
    key = quarantine_key
    if refusal is None:
        key = f"{RETURNS}{kit.reference}/{kind}/{token}.pdf"
        ctx.store.put(key, data, sha256=digest, content_type="application/pdf")
    ret = KitReturn(
        kit_id=kit.id,
        kind=kind,
        status="refused" if refusal else (verdict.status if verdict else "refused"),
        refusal_code=refusal.code if refusal else None,
        refusal_message=refusal.message if refusal else None,
        storage_key=key,
        quarantined=refusal is not None,
        sha256=digest,
        size=len(data),
        verification=verdict.to_json()
        if verdict
        else {"details": refusal.details if refusal else []},
        uploaded_by=principal.actor,
        uploaded_from=address,
    )
    db.session.add(ret)
    db.session.flush()
    record(
        "return_received",
        actor=principal.actor,
        kit_id=kit.id,
        siret=kit.employer.siret,
        address=address,
        sha256_before=doc.sha256,
        sha256_after=digest,
        details={"kind": kind, "return_id": ret.id},
    )
    if refusal is not None:
        event, extra = "return_refused", {"code": refusal.code}
    elif ret.status == "accepted":
        signers = [signer["name"] for signer in ret.verification.get("signers", [])]
        event, extra = "return_accepted", {"signers": signers}
    else:
        event, extra = "return_pending_review", {"reasons": ret.verification.get("reasons", [])}
    record(
        event,
        actor="system",
        kit_id=kit.id,
        sha256_after=digest,
        details={"kind": kind, "return_id": ret.id, **extra},
    )
    if event == "return_accepted":
        _update_kit_status(kit)
        notify.return_accepted(kit, kind)
    db.session.commit()
    return ret, refusal


def _update_kit_status(kit: Kit) -> None:
    required = [d.kind for d in kit.documents if d.requires_signature]
    if kit.status == ISSUED and all(_accepted(kit, k) is not None for k in required):
        lifecycle.mark_employer_signed(kit)
        record("employer_signed", actor="system", kit_id=kit.id)


def review_queue(*, status: str = "pending_review") -> Sequence[KitReturn]:
    if status not in ("pending_review", "accepted", "refused"):
        raise InvalidInput("État de retour inconnu.", code="invalid_status", field="status")
    return db.session.scalars(
        select(KitReturn).where(KitReturn.status == status).order_by(KitReturn.uploaded_at)
    ).all()


def get_return(return_id: int) -> KitReturn:
    ret = db.session.get(KitReturn, return_id)
    if ret is None:
        raise NotFound("Retour introuvable.", code="unknown_return")
    return ret


def decide(
    return_id: int, *, accept: bool, reason: str | None, principal: Principal, version: int | None
) -> KitReturn:
    """A staff decision on a return waiting for review; racing decisions: one wins, one 409."""
    ret = get_return(return_id)
    kit = _lock_kit(ret.kit_id)
    db.session.refresh(ret)
    if version is not None and version != ret.version:
        raise Conflict("Ce retour a changé depuis son affichage : rechargez.", code="stale_return")
    if ret.status != "pending_review":
        raise Conflict("Ce retour a déjà fait l'objet d'une décision.", code="already_decided")
    if not accept and not (reason or "").strip():
        raise InvalidInput("Indiquez le motif du refus.", code="reason_required", field="reason")
    if accept and _accepted(kit, ret.kind) is not None:
        raise Conflict("Une pièce a déjà été acceptée pour ce document.", code="already_accepted")
    if accept and kit.status not in OPEN_STATES:
        raise Conflict("Ce kit n'attend plus de signature.", code="kit_closed")
    ret.status = "accepted" if accept else "refused"
    ret.decided_by, ret.decided_at = principal.actor, utcnow()
    ret.decision_reason = (reason or "").strip()[:1000] or None
    if not accept:
        ret.refusal_code, ret.refusal_message = "refused_by_reviewer", ret.decision_reason
    try:
        db.session.flush()
    except StaleDataError as exc:
        db.session.rollback()
        raise Conflict(
            "Ce retour vient d'être traité par quelqu'un d'autre.", code="already_decided"
        ) from exc
    record(
        "return_reviewed",
        actor=principal.actor,
        kit_id=kit.id,
        sha256_after=ret.sha256,
        details={
            "kind": ret.kind,
            "return_id": ret.id,
            "accept": accept,
            "reason": ret.decision_reason,
        },
    )
    if accept:
        _update_kit_status(kit)
    else:
        notify.return_refused(kit, ret.kind, ret.decision_reason or "")
    db.session.commit()
    return ret


def accepted_return(kit: Kit, kind: str) -> KitReturn:
    get_document(kit, kind)
    ret = _accepted(kit, kind)
    if ret is None:
        raise NotFound("Aucune pièce signée acceptée pour ce document.", code="no_accepted_return")
    return ret


# -- countersignature ----------------------------------------------------------------------


def countersign_kit(
    kit_id: int,
    *,
    principal: Principal,
    store: ObjectStore,
    key: SigningKey,
    tsa_url: str | None,
) -> Kit:
    kit = _lock_kit(kit_id)
    lifecycle.refuse_unless_open(kit)
    pieces = []
    for doc in kit.documents:
        if not doc.requires_signature:
            continue
        ret = _accepted(kit, doc.kind)
        if ret is None:
            raise Conflict(
                f"La pièce « {doc.title} » n'a pas encore de retour signé accepté.",
                code="employer_signature_missing",
            )
        pieces.append((doc, ret))
    label = f"{kit.convention.insurer} (gestionnaire {kit.convention.manager})"
    signed: list[tuple[KitDocument, KitReturn, str, bytes]] = []
    for doc, ret in pieces:
        box = doc.insurer_box
        place = (
            SignatureBox(int(box[0]), tuple(box[1:]))  # type: ignore[arg-type]
            if box
            else SignatureBox(-1, (300.0, 70.0, 560.0, 135.0))
        )
        try:
            data = countersign(
                store.get(ret.storage_key),
                key,
                signer_label=label,
                place=place,
                tsa_url=tsa_url,
                location=kit.employer.cdg.name,
                time_zone=labels.zone().key,  # the stamp's time, as every time a person reads
            )
        except TimestampUnavailable as exc:
            raise Conflict(
                "L'autorité d'horodatage ne répond pas : contreseing non effectué, réessayez.",
                code="timestamp_unavailable",
            ) from exc
        except SigningError as exc:
            raise Conflict(f"Le contreseing a échoué : {exc}", code="countersign_failed") from exc
        out_key = f"countersigned/{kit.reference}/{doc.kind}.pdf"
        signed.append((doc, ret, out_key, data))
    now = utcnow()
    for doc, ret, out_key, data in signed:
        info = store.put(
            out_key,
            data,
            content_type="application/pdf",
            metadata={"kit-reference": kit.reference, "kind": doc.kind},
        )
        ret.countersigned_key, ret.countersigned_sha256 = out_key, info.sha256
        ret.countersigned_at = now
        record(
            "countersigned",
            actor=principal.actor,
            kit_id=kit.id,
            sha256_before=ret.sha256,
            sha256_after=info.sha256,
            details={
                "kind": doc.kind,
                "return_id": ret.id,
                "level": "B-T" if tsa_url else "B-B",
                "key": key.subject,
            },
        )
    lifecycle.mark_countersigned(kit, at=now)
    enqueue_archive(kit, [doc.kind for doc, _, _, _ in signed])
    notify.kit_countersigned(kit)
    db.session.commit()
    return kit


def sweep_uploads(*, store: ObjectStore, older_than: timedelta) -> int:
    """Delete upload copies (quarantine and verified) that no return refers to and that are
    older than `older_than` (left by a crash between the copy and the commit); their number."""
    cutoff = datetime.now(UTC) - older_than
    removed = 0
    for prefix in (QUARANTINE, RETURNS):
        old = [
            info.key
            for info in store.list(prefix)
            if info.last_modified is None or info.last_modified < cutoff
        ]
        for start in range(0, len(old), 500):
            batch = old[start : start + 500]
            referred = set(
                db.session.scalars(
                    select(KitReturn.storage_key).where(KitReturn.storage_key.in_(batch))
                )
            )
            for key in batch:
                if key not in referred:
                    _discard(store, key)
                    removed += 1
    return removed
