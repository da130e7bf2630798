"""Signing in the browser: the signatory, one-time codes, the signature and its evidence.

The one-time code (6 digits, valid `CODE_MINUTES`, `MAX_ATTEMPTS` tries) is kept only as an
HMAC under the service's secret key; it travels only in the e-mail to the signatory (an outbox
job written in the request's transaction), never in a log, the audit trail or an answer.

On the right code, the service signs the exact issued PDF for the signatory (signing/browser.py)
and hands the bytes to `receive_return`: the same quarantine, verification and verdict as an
uploaded return; the browser-signing CA is among the trust roots, so the piece is accepted.
The evidence (signatory, code delivery and use, consent text, address, user agent, times,
fingerprints) is one audit event, `browser_signed`, in the same transaction as the return.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from sqlalchemy import select

from service import labels
from service.accounts.auth import Principal
from service.audit.domain import record
from service.engine.models import Job
from service.errors import Conflict, InvalidInput, TooManyRequests
from service.esign.models import Signatory, SigningRequest
from service.extensions import db
from service.kits import lifecycle
from service.kits.domain import get_document
from service.kits.models import Kit, KitDocument
from service.mail.queue import queue_mail
from service.ratelimit import Rule, limiter
from service.returns.domain import ReturnContext, receive_return
from service.returns.models import KitReturn
from service.timeutil import iso, utcnow
from service.wording import employer_designation
from signing import browser
from signing.browser import SigningCA
from signing.errors import Refused, SigningError, TimestampUnavailable
from storage import sha256_hex

log = logging.getLogger(__name__)

CODE_MINUTES = 10
MAX_ATTEMPTS = 5
#: codes sent: per kit, and per address whatever the kit
SEND_KIT = Rule.of("esign-send-kit", "5/15 minutes; 20/day")
SEND_ADDRESS = Rule.of("esign-send-address", "10/15 minutes; 60/day")
#: wrong codes, per kit and address (on top of the 5 tries of each code)
CONFIRM_KIT_ADDRESS = Rule.of("esign-confirm", "10/15 minutes; 30/day")


def consent_text(doc: KitDocument) -> str:
    """The consent the signatory ticks, exactly as the page shows it and the proof prints it."""
    return (
        f"Je reconnais avoir pris connaissance du document « {doc.title} » "
        f"(empreinte SHA-256 {doc.sha256[:16]}…) et je le signe."
    )


# -- the signatory -------------------------------------------------------------------------


def get_signatory(kit: Kit) -> Signatory | None:
    return db.session.scalar(select(Signatory).where(Signatory.kit_id == kit.id))


def name_signatory(
    kit: Kit, *, name: str, title: str, email: str, principal: Principal, address: str | None
) -> Signatory:
    """Who signs for the collectivité; naming another one replaces the pending codes."""
    lifecycle.refuse_unless_open(kit)
    clean = {k: " ".join(v.split()) for k, v in (("name", name), ("title", title))}
    for key, label in (("name", "le nom"), ("title", "la qualité")):
        if len(clean[key]) < 2:
            raise InvalidInput(f"Indiquez {label} du signataire.", code="invalid_input", field=key)
    signatory = get_signatory(kit)
    if signatory is None:
        signatory = Signatory(kit_id=kit.id, name="", title="", email="", named_by="")
        db.session.add(signatory)
    signatory.name, signatory.title = clean["name"], clean["title"]
    signatory.email = email.strip().lower()
    signatory.named_by, signatory.named_at = principal.actor, utcnow()
    for req in _pending(kit):
        req.status = "replaced"
    record(
        "signatory_named",
        actor=principal.actor,
        kit_id=kit.id,
        siret=kit.employer.siret,
        address=address,
        details={"name": signatory.name, "title": signatory.title, "email": signatory.email},
    )
    db.session.commit()
    return signatory


# -- codes ---------------------------------------------------------------------------------


def _pending(kit: Kit, kind: str | None = None) -> Sequence[SigningRequest]:
    query = select(SigningRequest).where(
        SigningRequest.kit_id == kit.id, SigningRequest.status == "pending"
    )
    if kind is not None:
        query = query.where(SigningRequest.kind == kind)
    return db.session.scalars(query).all()


def _hash(secret: str, nonce: str, code: str) -> str:
    return hmac.new(secret.encode(), f"{nonce}:{code}".encode(), hashlib.sha256).hexdigest()


def _accepted(kit: Kit, kind: str) -> KitReturn | None:
    return db.session.scalar(
        select(KitReturn).where(
            KitReturn.kit_id == kit.id, KitReturn.kind == kind, KitReturn.status == "accepted"
        )
    )


def signable(kit: Kit, kind: str) -> KitDocument:
    """The piece, when it can be signed in the browser now; `not_signable` (409) otherwise."""
    doc = get_document(kit, kind)
    if not doc.requires_signature:
        raise Conflict(
            "Ce document ne se signe pas : seuls les conditions particulières et la convention "
            "d'adhésion reviennent signées.",
            code="not_signable",
        )
    if lifecycle.state_of(kit) is not lifecycle.ISSUED:
        raise Conflict("Ce kit n'attend plus de signature de la collectivité.", code="not_signable")
    if _accepted(kit, kind) is not None:
        raise Conflict("Cette pièce est déjà signée et acceptée.", code="not_signable")
    return doc


def latest_request(kit: Kit, kind: str) -> SigningRequest | None:
    return db.session.scalar(
        select(SigningRequest)
        .where(SigningRequest.kit_id == kit.id, SigningRequest.kind == kind)
        .order_by(SigningRequest.id.desc())
        .limit(1)
    )


def request_code(
    kit: Kit, kind: str, *, principal: Principal, address: str | None, secret: str
) -> SigningRequest:
    """E-mail a new one-time code to the signatory for this piece (earlier ones stop working)."""
    doc = signable(kit, kind)
    signatory = get_signatory(kit)
    if signatory is None:
        raise Conflict(
            "Désignez d'abord le signataire de la collectivité (nom, qualité, courriel).",
            code="signatory_missing",
        )
    too_many = "Trop de codes demandés : réessayez dans quelques minutes."
    limiter().check(SEND_KIT, str(kit.id), message=too_many)
    limiter().check(SEND_ADDRESS, address or "inconnue", message=too_many)
    limiter().hit(SEND_KIT, str(kit.id))
    limiter().hit(SEND_ADDRESS, address or "inconnue")
    for earlier in _pending(kit, kind):
        earlier.status = "replaced"
    code = f"{secrets.randbelow(1_000_000):06d}"
    nonce = secrets.token_hex(16)
    now = utcnow()
    req = SigningRequest(
        kit_id=kit.id,
        kind=kind,
        nonce=nonce,
        code_hash=_hash(secret, nonce, code),
        status="pending",
        signatory_name=signatory.name,
        signatory_title=signatory.title,
        signatory_email=signatory.email,
        document_sha256=doc.sha256,
        created_at=now,
        expires_at=now + timedelta(minutes=CODE_MINUTES),
        requested_from=address,
        attempts=0,
    )
    db.session.add(req)
    db.session.flush()
    designation = employer_designation(kit.employer)
    job = queue_mail(
        signatory.email,
        f"Votre code de signature – kit {kit.reference}",
        f"Bonjour {signatory.name},\n\n"
        f"Pour signer en ligne la pièce « {doc.title} » du kit {kit.reference} "
        f"{designation.of_the}, saisissez ce code à usage unique :\n\n"
        f"    {code}\n\n"
        f"Il est valable {CODE_MINUTES} minutes (jusqu'au {labels.when(req.expires_at)}, "
        f"{labels.zone_label()}) et pour un seul essai réussi ; au bout de {MAX_ATTEMPTS} "
        "essais erronés, demandez-en un nouveau.\n\n"
        "Si vous n'êtes pas à l'origine de cette demande, ne communiquez ce code à personne "
        "et prévenez votre gestionnaire.\n",
        kit_id=kit.id,
        secret=code,
    )
    db.session.flush()
    req.mail_job_id = job.id
    record(
        "signing_code_sent",
        actor=principal.actor,
        kit_id=kit.id,
        siret=kit.employer.siret,
        address=address,
        sha256_before=doc.sha256,
        details={
            "kind": kind,
            "request_id": req.id,
            "to": signatory.email,
            "expires_at": iso(req.expires_at),
        },
    )
    db.session.commit()
    return req


# -- the signature -------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureGiven:
    """What the signatory gave: a drawn PNG (data URL) or a typed name (one of them)."""

    typed: str | None = None
    drawn: str | None = None


@dataclass(frozen=True)
class BrowserContext:
    returns: ReturnContext
    ca: SigningCA
    secret: str
    tsa_url: str | None
    zone: str


def _lock_kit(kit_id: int) -> Kit:
    """As `service.returns.domain` locks a kit (NO KEY UPDATE): taken first, so that the
    audit head is always locked after the kit, as every other writer does."""
    kit = db.session.execute(
        select(Kit).where(Kit.id == kit_id).with_for_update(key_share=True)
    ).scalar_one()
    db.session.refresh(kit)
    return kit


def _check_signature(given: SignatureGiven) -> tuple[str, browser.Image.Image | None, str | None]:
    if (given.typed is None) == (given.drawn is None):
        raise InvalidInput(
            "Signez en saisissant votre nom ou en dessinant votre signature (l'un des deux).",
            code="signature_required",
            field="signature",
        )
    try:
        if given.drawn is not None:
            return "drawn", browser.check_drawing(given.drawn), None
        return "typed", None, browser.check_typed(given.typed or "")
    except browser.SignatureRefused as exc:
        raise InvalidInput(exc.message, code=exc.code, field="signature") from None


def _refuse_code(req: SigningRequest, *, principal: Principal, address: str | None) -> NoReturn:
    """A wrong code: counted (and committed) before the answer; the fifth kills the request."""
    req.attempts += 1
    limiter().hit(CONFIRM_KIT_ADDRESS, str(req.kit_id), address or "inconnue")
    dead = req.attempts >= MAX_ATTEMPTS
    if dead:
        req.status = "dead"
    record(
        "signing_request_blocked" if dead else "signing_code_rejected",
        actor=principal.actor,
        kit_id=req.kit_id,
        address=address,
        details={"kind": req.kind, "request_id": req.id, "attempts": req.attempts},
    )
    db.session.commit()
    if dead:
        raise TooManyRequests(
            "Trop de codes erronés : ce code ne fonctionne plus, demandez-en un nouveau.",
            code="too_many_attempts",
        )
    left = MAX_ATTEMPTS - req.attempts
    raise InvalidInput(
        f"Code incorrect : encore {left} essai{'s' if left > 1 else ''}.",
        code="code_invalid",
        field="code",
    )


def confirm(
    kit: Kit,
    kind: str,
    *,
    code: str,
    consent: bool,
    signature: SignatureGiven,
    principal: Principal,
    address: str | None,
    user_agent: str | None,
    ctx: BrowserContext,
) -> KitReturn:
    """Check consent, signature and code; sign; verify and record as an uploaded return."""
    if consent is not True:
        raise InvalidInput(
            "Cochez la case de consentement pour signer.", code="consent_required", field="consent"
        )
    mode, drawing, typed = _check_signature(signature)
    get_document(kit, kind)
    limiter().check(
        CONFIRM_KIT_ADDRESS,
        str(kit.id),
        address or "inconnue",
        message="Trop de codes erronés : réessayez plus tard.",
    )
    kit = _lock_kit(kit.id)
    req = latest_request(kit, kind)
    if req is not None:
        db.session.refresh(req)
    now = utcnow()
    if req is None or req.status == "replaced":
        raise InvalidInput(
            "Aucun code en cours pour cette pièce : demandez un code.",
            code="code_invalid",
            field="code",
        )
    if req.status == "used":
        raise Conflict("Ce code a déjà servi : demandez-en un nouveau.", code="code_used")
    if req.status == "dead":
        raise TooManyRequests(
            "Trop de codes erronés : ce code ne fonctionne plus, demandez-en un nouveau.",
            code="too_many_attempts",
        )
    if req.expires_at <= now:
        raise InvalidInput(
            "Ce code a expiré : demandez-en un nouveau.", code="code_expired", field="code"
        )
    given = "".join(ch for ch in str(code or "") if not ch.isspace())
    if not hmac.compare_digest(req.code_hash, _hash(ctx.secret, req.nonce, given)):
        _refuse_code(req, principal=principal, address=address)
    doc = signable(kit, kind)
    if req.document_sha256 != doc.sha256:
        raise Conflict("Le document a changé depuis l'envoi du code.", code="not_signable")
    req.attempts += 1
    req.status, req.used_at = "used", now
    limiter().clear(CONFIRM_KIT_ADDRESS, str(kit.id), address or "inconnue")

    issued = ctx.returns.store.get(doc.pdf_key)
    signatory = browser.Signatory(
        name=req.signatory_name,
        title=req.signatory_title,
        email=req.signatory_email,
        organisation=kit.employer.name,
        siret=kit.employer.siret,
    )
    try:
        made = browser.sign_in_browser_field(
            issued,
            expected_sha256=doc.sha256,
            ca=ctx.ca,
            signatory=signatory,
            drawing=drawing,
            typed=typed,
            location=kit.employer.name,
            tsa_url=ctx.tsa_url,
            time_zone=ctx.zone,
            signing_time=now,
        )
    except TimestampUnavailable as exc:
        db.session.rollback()
        raise Conflict(
            "L'autorité d'horodatage ne répond pas : signature non effectuée, réessayez.",
            code="timestamp_unavailable",
        ) from exc
    except browser.BrowserSigningFailed as exc:
        db.session.rollback()
        raise Conflict(
            "Le document émis ne correspond plus à son empreinte : signature impossible, "
            "contactez votre gestionnaire.",
            code="document_altered",
        ) from exc
    except SigningError as exc:
        db.session.rollback()
        log.error("browser signing of kit %s (%s) failed: %s", kit.id, kind, exc)
        raise Conflict(
            "La signature n'a pas pu être apposée : réessayez dans quelques minutes ou "
            "contactez votre gestionnaire.",
            code="signing_failed",
        ) from exc

    job = db.session.get(Job, req.mail_job_id) if req.mail_job_id else None
    record(
        "browser_signed",
        actor=principal.actor,
        kit_id=kit.id,
        siret=kit.employer.siret,
        address=address,
        sha256_before=doc.sha256,
        sha256_after=sha256_hex(made.data),
        details={
            "kind": kind,
            "request_id": req.id,
            "signatory": {
                "name": req.signatory_name,
                "title": req.signatory_title,
                "email": req.signatory_email,
            },
            "consent": consent_text(doc),
            "mode": mode,
            "typed": typed,
            "code_queued_at": iso(req.created_at),
            "code_sent_at": iso(job.done_at) if job is not None else None,
            "code_used_at": iso(now),
            "attempts": req.attempts,
            "user_agent": (user_agent or "")[:300],
            "level": "B-T" if ctx.tsa_url else "B-B",
            "certificate": {
                "subject": made.subject,
                "serial": made.serial,
                "fingerprint": made.fingerprint,
            },
        },
    )
    # receive_return commits: the code's use, the evidence and the return together
    ret = receive_return(
        kit, kind, made.data, principal=principal, address=address, ctx=ctx.returns
    )
    req = db.session.get(SigningRequest, req.id) or req
    req.return_id = ret.id
    db.session.commit()
    return ret


def refusal_as_error(refusal: Refused) -> InvalidInput:
    return InvalidInput(refusal.message, code=refusal.code)
