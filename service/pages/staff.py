"""Pages of the manager's production staff: dashboard, employers, kits, review, countersign."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

from flask import (
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from pydantic import ValidationError
from sqlalchemy import select

from service import ID_MAX, labels
from service.api import field_errors
from service.audit.domain import kit_events
from service.backends import document_store
from service.campaigns import domain as campaigns
from service.downloads import csv_attachment, csv_text, record_kit_download, stream_object
from service.engine.celery_app import live_workers
from service.errors import InvalidInput, NotFound, ServiceError, TooManyRequests, Unauthorized
from service.extensions import db
from service.formatting import group_code, long_date
from service.kits import domain as kits
from service.kits import lifecycle
from service.kits.actions import cancel_one, issue_one
from service.kits.lifecycle import CANCELLED, OPEN_STATES
from service.kits.listing import list_employers
from service.kits.models import Kit
from service.kits.proof import french_dn
from service.pages.auth import (
    current_principal,
    page_roles,
    safe_next_path,
    sign_in_user,
    sign_out,
)
from service.pages.blueprint import bp
from service.reference import domain as reference
from service.reference.models import Convention, Employer
from service.reference.rules import normalize_siret, parse_contribution
from service.reference.schemas import EMPLOYER_KINDS, EmployerIn
from service.reference.simulation import EXCLUDED, simulate
from service.returns import domain as returns
from service.returns.actions import countersign_and_archive
from service.returns.models import KitReturn
from service.returns.preview import PreviewPending, ReviewPreview, page_image, review_preview
from service.timeutil import utcnow
from service.wording import agree, counted

STAFF = ("admin", "staff")
#: the checkbox that confirms an action that cannot be undone
CONFIRM = "confirmation"


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {
        "who": current_principal(),
        "status_labels": labels.KIT_STATES,
        "kit_states": lifecycle,  # states and groups, never spelled in a template
        "kinds": EMPLOYER_KINDS,
    }


@bp.app_template_global()
def label(kind: str, code: Any) -> str:
    """`label('document', 'special-conditions')` in templates: the one place for labels."""
    return {
        "document": labels.document,
        "kit": labels.kit_state,
        "return": labels.return_state,
        "role": labels.role,
        "event": labels.event,
        "actor": labels.actor,
    }[kind](code)


for _name, _filter in {
    "when": labels.when,
    "when_seconds": labels.when_seconds,
    "day": labels.day,
    "long_day": labels.long_day,
}.items():
    bp.add_app_template_filter(_filter, _name)


def _confirmed() -> bool:
    return request.form.get(CONFIRM) == "oui"


_FORM_NUMBER = re.compile(r"[1-9][0-9]{0,9}")


def form_number(raw: str) -> int | None:
    """A positive whole number from a form or a query (an id, a version, a count of days):
    ASCII digits up to the columns' range (`ID_MAX`), else None."""
    if _FORM_NUMBER.fullmatch(raw) is None or int(raw) > ID_MAX:
        return None
    return int(raw)


# -- sign-in ---------------------------------------------------------------------------------


@bp.route("/connexion", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        try:
            user = sign_in_user(
                request.form.get("email", ""),
                request.form.get("password", ""),
                address=request.remote_addr,
            )
        except TooManyRequests as exc:
            page = render_template("login.html", error=exc.message)
            return page, 429, {"Retry-After": str(exc.retry_after or 60)}
        except Unauthorized as exc:
            error = exc.message
        else:
            target = safe_next_path(request.args.get("suivant"))
            if target is None:
                target = url_for("pages.cdg_home" if user.role == "cdg" else "pages.index")
            return redirect(target)
    # a page, not an API answer: the form is shown again with its message (status 200)
    return render_template("login.html", error=error)


@bp.post("/deconnexion")
def logout() -> Any:
    sign_out()
    flash("Vous êtes déconnecté.")
    return redirect(url_for("pages.login"))


# -- dashboard -------------------------------------------------------------------------------


@bp.get("/")
def index() -> Any:
    who = current_principal()
    if who is None:
        return redirect(url_for("pages.login"))
    if who.role == "cdg":
        return redirect(url_for("pages.cdg_home"))
    if who.role == "employer":
        return redirect(url_for("pages.portal_kit"))
    return dashboard()


@page_roles(*STAFF)
def dashboard() -> Any:
    cdgs = reference.list_cdgs()
    cdg = request.args.get("cdg") or (cdgs[0].code if cdgs else None)
    status = request.args.get("statut") or None
    kind = request.args.get("type") or None
    q = request.args.get("q") or None
    waiting = request.args.get("attente") or None
    try:
        page = max(int(request.args.get("page", 1)), 1)
    except ValueError:
        page = 1
    counts: Counter[str] = Counter()
    rows: list[tuple[Employer, Kit | None, int]] = []
    if cdg:
        # one query for the current kits; the listing below only filters
        current = {e.id: kit for e, kit in kits.employers_with_current_kit(cdg)}
        counts = Counter(kit.status if kit else "none" for kit in current.values())
        try:
            _, listed = list_employers(
                cdg=cdg, status=status, q=q, kind=kind, limit=100_000, offset=0
            )
        except InvalidInput:
            listed = []
        rows = [(e, current.get(e.id), _waiting_days(current.get(e.id))) for e in listed]
        if waiting:
            days = form_number(waiting) or 0
            rows = [row for row in rows if row[2] >= days]
    return render_template(
        "dashboard.html",
        cdgs=cdgs,
        cdg=cdg,
        counts=counts,
        rows=rows[(page - 1) * 50 : page * 50],
        total=len(rows),
        page=page,
        filters={"statut": status, "type": kind, "q": q, "attente": waiting},
        batches=campaigns.recent(3),
    )


def _waiting_days(kit: Kit | None) -> int:
    if kit is None or kit.status not in OPEN_STATES:
        return 0
    return (utcnow() - kit.status_changed_at).days


# -- employers -------------------------------------------------------------------------------


def _contribution_from_form(form: Any) -> dict[str, Any]:
    if form.get("mode") == "by_category":
        return {
            "mode": "by_category",
            "amounts": {
                c: form.get(f"amount_{c}", "") for c in "ABC" if form.get(f"amount_{c}", "").strip()
            },
            "criteria": form.get("criteria", ""),
        }
    return {"mode": "flat", "amount": form.get("amount", "")}


#: API field names (dotted) → the form's field ids
_FORM_FIELDS = {
    "contribution.amount": "amount",
    "contribution.amounts.A": "amount_A",
    "contribution.amounts.B": "amount_B",
    "contribution.amounts.C": "amount_C",
    "contribution.criteria": "criteria",
}
#: in the order of the form, to focus the first error
FORM_ORDER = (
    "siret",
    "name",
    "kind",
    "address",
    "email",
    "headcount",
    "convention_id",
    "cst_opinion_on",
    "deliberation_on",
    "joins_on",
    "contribution",
    "amount",
    "amount_A",
    "amount_B",
    "amount_C",
    "criteria",
    "form",
)
_FIELD_MESSAGES = {
    ("headcount", "Valeur trop petite."): "L'effectif ne peut pas être négatif.",
    ("headcount", "Valeur trop grande."): "Effectif trop grand (100 000 au plus).",
    ("address", "Valeur trop courte."): "Adresse trop courte : indiquez la rue et la commune.",
    ("convention_id", "Ce champ est obligatoire."): "Choisissez une convention.",
    ("convention_id", "Nombre entier attendu."): "Choisissez une convention.",
}


def _form_field(field: str | None) -> str:
    if not field:
        return "form"
    if field in _FORM_FIELDS:
        return _FORM_FIELDS[field]
    if field.startswith("contribution"):
        return "contribution"
    return field.split(".")[0]


def employer_form_errors(
    values: dict[str, str], convention: Convention | None
) -> tuple[EmployerIn | None, dict[str, str]]:
    """Validate the page's form through the API's schema and rules; every error at once."""
    payload: dict[str, Any] = {
        name: values[name].strip()
        for name in EmployerIn.model_fields
        if name not in ("contribution", "cdg") and values.get(name, "").strip()
    }
    payload["cdg"] = convention.cdg.code if convention else ""
    payload["contribution"] = _contribution_from_form(values)
    errors: dict[str, str] = {}

    def add(exc: ServiceError) -> None:
        field = _form_field(exc.field)
        message = _FIELD_MESSAGES.get((field, exc.message), exc.message)
        errors.setdefault(field, message)

    data = None
    try:
        data = EmployerIn.model_validate(payload)
    except ValidationError as exc:
        for error in field_errors(exc):
            add(error)
    if convention is None:
        errors.pop("cdg", None)
        errors.setdefault("convention_id", "Choisissez une convention.")
    # the rules that do not depend on each other, so that all their errors show at once
    for check, argument in ((normalize_siret, payload.get("siret")),):
        try:
            check(argument)
        except ServiceError as exc:
            add(exc)
    try:
        parse_contribution(
            payload["contribution"],
            regime=convention.regime if convention is not None else "facultative",
        )
    except ServiceError as exc:
        add(exc)
    return (data if not errors else None), errors


def first_error(errors: dict[str, str]) -> str | None:
    return next((name for name in FORM_ORDER if name in errors), next(iter(errors), None))


@bp.route("/employeurs/nouveau", methods=["GET", "POST"])
@page_roles(*STAFF)
def employer_new() -> Any:
    conventions = db.session.scalars(select(Convention).order_by(Convention.id)).all()
    values: dict[str, Any] = {"mode": "flat"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = request.form.to_dict()
        convention_id = form_number(values.get("convention_id", ""))
        convention = db.session.get(Convention, convention_id) if convention_id else None
        data, errors = employer_form_errors(values, convention)
        if data is not None:
            try:
                employer = reference.create_employer(**data.model_dump())
                db.session.commit()
            except ServiceError as exc:
                db.session.rollback()
                field = "siret" if exc.code == "duplicate_siret" else _form_field(exc.field)
                errors[field] = exc.message
            else:
                flash(f"Employeur « {employer.name} » créé.")
                return redirect(url_for("pages.employer_page", siret=employer.siret))
    # a page, not an API answer: the form comes back with its messages (as the sign-in does)
    return render_template(
        "employer_form.html",
        conventions=conventions,
        values=values,
        errors=errors,
        first_error=first_error(errors),
    )


@bp.get("/employeurs/<siret>")
@page_roles(*STAFF)
def employer_page(siret: str) -> Any:
    employer = reference.get_employer(siret)
    kit = kits.current_kit(employer)
    kit_returns = (
        db.session.scalars(
            select(KitReturn).where(KitReturn.kit_id == kit.id).order_by(KitReturn.id)
        ).all()
        if kit
        else []
    )
    locked = returns.portal_throttled(siret)
    countersigned = [r for r in kit_returns if r.status == "accepted" and r.countersigned_key]
    return render_template(
        "employer.html",
        employer=employer,
        kit=kit,
        returns=kit_returns,
        countersigned=countersigned,
        locked=locked,
        open_kit=kit is not None and kit.status in OPEN_STATES,
        reissue=kit is not None and kit.status != CANCELLED,
        error_field=request.args.get("erreur"),
    )


@bp.post("/employeurs/<siret>/kit")
@page_roles(*STAFF)
def employer_issue(siret: str) -> Any:
    employer = reference.get_employer(siret)
    current = kits.current_kit(employer)
    if current is not None and current.status != CANCELLED and not _confirmed():
        flash(
            "Cochez la case de confirmation : un nouveau kit sera émis et envoyé à la "
            "collectivité"
            + (
                ", il remplace le kit ouvert, dont le code d'accès cessera de fonctionner."
                if current.status in OPEN_STATES
                else "."
            ),
            "error",
        )
        return redirect(url_for("pages.employer_page", siret=siret, erreur="reissue"))
    try:
        issued = issue_one(
            employer,
            actor=current_principal().actor,
            prerequisites_override_reason=(  # hE, hI
                request.form.get("prerequisites_override_reason", "").strip()[:500] or None
            ),
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.employer_page", siret=siret, erreur="issue") + "#pieces")
    code = group_code(issued.access_code)
    return render_template("issued.html", employer=employer, kit=issued.kit, code=code)


@bp.post("/employeurs/<siret>/deverrouillage")
@page_roles(*STAFF)
def employer_unlock(siret: str) -> Any:
    reference.get_employer(siret)
    returns.unlock_portal(siret, principal=current_principal())
    db.session.commit()
    flash("Accès au portail débloqué pour cette collectivité.")
    return redirect(url_for("pages.employer_page", siret=siret))


@bp.post("/kits/<int:kit_id>/annulation")
@page_roles(*STAFF)
def kit_cancel(kit_id: int) -> Any:
    kit = kits.get_kit(kit_id, principal=current_principal())
    siret = kit.employer.siret
    try:
        if not _confirmed():
            raise InvalidInput(
                "Cochez la case de confirmation : l'annulation est définitive.",
                code="confirmation_missing",
                field="confirmation",
            )
        cancel_one(kit_id, reason=request.form.get("reason", ""), principal=current_principal())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.employer_page", siret=siret, erreur="cancel"))
    flash("Kit annulé : son code d'accès ne fonctionne plus.")
    return redirect(url_for("pages.employer_page", siret=siret))


def _page_download(kit: Kit, file: str, sha256: str | None) -> None:
    record_kit_download(kit, file=file, actor=current_principal().actor, sha256=sha256)


@bp.get("/kits/<int:kit_id>/documents/<kind>.pdf")
@page_roles(*STAFF, "cdg")
def kit_document(kit_id: int, kind: str) -> Response:
    kit = kits.get_kit(kit_id, principal=current_principal())
    doc = kits.get_document(kit, kind)
    _page_download(kit, f"{kind}.pdf", doc.sha256)
    return stream_object(
        doc.pdf_key, "application/pdf", labels.download_name(kit.reference, kind), doc.size
    )


@bp.get("/retours/<int:return_id>.pdf")
@page_roles(*STAFF)
def return_file(return_id: int) -> Response:
    """A download, never shown inline: an uploaded PDF must not run in staff's browser."""
    ret = returns.get_return(return_id)
    if ret.quarantined:
        raise NotFound("Retour introuvable.", code="unknown_return")
    countersigned = ret.countersigned_key is not None
    _page_download(
        ret.kit,
        f"{ret.kind}/signed.pdf",
        ret.countersigned_sha256 if countersigned else ret.sha256,
    )
    response = stream_object(
        ret.countersigned_key or ret.storage_key,
        "application/pdf",
        labels.download_name(
            ret.kit.reference, ret.kind, copy="countersigned" if countersigned else "signed"
        ),
        None,
    )
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.post("/kits/<int:kit_id>/contreseing")
@page_roles(*STAFF)
def kit_countersign(kit_id: int) -> Any:
    kit = kits.get_kit(kit_id, principal=current_principal())
    if not _confirmed():
        flash(
            "Cochez la case de confirmation : la contresignature engage l'assureur et ne "
            "peut pas être annulée.",
            "error",
        )
        return redirect(url_for("pages.employer_page", siret=kit.employer.siret, erreur="sign"))
    try:
        countersign_and_archive(kit_id, principal=current_principal())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        flash("Kit contresigné.")
    return redirect(url_for("pages.employer_page", siret=kit.employer.siret))


AUDIT_HEADERS = (
    "Date et heure ({zone})",
    "Événement",
    "Document",
    "Décision",
    "Motif ou précision",
    "Par",
    "Adresse IP",
    "Empreinte SHA-256 du fichier",
    "Empreinte de l'événement",
)


def audit_rows(kit: Kit) -> list[dict[str, str]]:
    """The kit's audit trail as a person reads it: French events, file, decision, reason, who."""
    rows = []
    for e in kit_events(kit.id):
        detail = labels.event_details(e.event, e.details)
        rows.append(
            {
                "at": labels.when_seconds(e.at),
                "event": labels.event(e.event),
                "file": detail["file"],
                "decision": detail["decision"],
                "reason": detail["reason"],
                "actor": labels.actor(e.actor),
                "address": e.address or "",
                "sha256": e.sha256_after or "",
                "hash": e.hash,
            }
        )
    return rows


@bp.get("/kits/<int:kit_id>/journal")
@page_roles(*STAFF, "cdg")
def kit_audit(kit_id: int) -> Any:
    kit = kits.get_kit(kit_id, principal=current_principal())
    return render_template(
        "audit.html", kit=kit, events=audit_rows(kit), zone_label=labels.zone_label()
    )


@bp.get("/kits/<int:kit_id>/journal.csv")
@page_roles(*STAFF, "cdg")
def kit_audit_csv(kit_id: int) -> Response:
    kit = kits.get_kit(kit_id, principal=current_principal())
    rows = [
        [
            r["at"],
            r["event"],
            r["file"],
            r["decision"],
            r["reason"],
            r["actor"],
            r["address"],
            r["sha256"],
            r["hash"],
        ]
        for r in audit_rows(kit)
    ]
    headers = [AUDIT_HEADERS[0].format(zone=labels.zone_label()), *AUDIT_HEADERS[1:]]
    return csv_attachment(csv_text(headers, rows), f"journal-{kit.reference}.csv")


# -- simulator -------------------------------------------------------------------------------


@bp.get("/simulateur")
@page_roles(*STAFF, "cdg")
def simulator() -> Any:
    conventions = db.session.scalars(select(Convention).order_by(Convention.id)).all()
    result = error = None
    args = request.args
    if args.get("gross") or args.get("tbi"):
        try:
            convention = reference.get_convention(int(args.get("convention", "0") or 0))
            result = simulate(
                base_rate=convention.base_rate,
                available_options=reference.convention_options(convention),
                elements=args,
                contribution=args.get("contribution"),
                option_codes=args.getlist("options"),
                regime=convention.regime,
            )
        except (ServiceError, ValueError) as exc:
            error = getattr(exc, "message", "Donnée invalide.")
    return render_template(
        "simulator.html",
        conventions=conventions,
        result=result,
        error=error,
        args=args,
        excluded=EXCLUDED,
    )


# -- review ----------------------------------------------------------------------------------


@bp.get("/revue")
@page_roles(*STAFF)
def review_list() -> Any:
    return render_template("review_list.html", items=returns.review_queue())


@bp.get("/revue/<int:return_id>")
@page_roles(*STAFF)
def review(return_id: int) -> Any:
    ret = returns.get_return(return_id)
    issued = kits.get_document(ret.kit, ret.kind)
    try:
        preview: ReviewPreview | None = review_preview(ret, store=document_store())
    except PreviewPending:
        preview = None  # the page says so; its images come once it is made
    verification = ret.verification or {}
    return render_template(
        "review.html",
        ret=ret,
        issued=issued,
        preview=preview,
        pending_message=PreviewPending.message,
        received=_moment(ret.uploaded_at),
        sender=labels.actor(ret.uploaded_by),
        signers=[_signer_row(raw) for raw in verification.get("signers") or ()],
        pdfa_lost=verification.get("pdfa_preserved") is False,
        pdfa_reason=verification.get("pdfa_reason") or "",
    )


def _moment(value: datetime | str | None) -> str:
    """`22 novembre 2026 à 16 h 45`, in the readers' time zone (an ISO text is read as such)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return ""
    local = labels.paris(value)
    return "" if local is None else f"{long_date(local.date())} à {local.hour} h {local:%M}"


def _signer_row(raw: dict[str, Any]) -> dict[str, Any]:
    """One signature of the verification, as staff read it: French names, Paris time."""
    return {
        "name": raw.get("name") or "",
        "organisation": raw.get("organisation") or "",
        "issuer": french_dn(str(raw.get("issuer") or "")),
        "signed_at": _moment(raw.get("signing_time")),
        "level": raw.get("level") or "",
        "trusted": bool(raw.get("trusted")),
        "problems": [str(p) for p in raw.get("problems") or ()],
    }


@bp.get("/revue/<int:return_id>/pages/<int:number>-<side>.png")
def review_page_image(return_id: int, number: int, side: str) -> Response:
    """One page image of the review; staff only, a 404 for anyone else (an image, no sign-in).

    A 503 with Retry-After while the preview is being made (`PreviewPending`)."""
    who = current_principal()
    if who is None or who.role not in STAFF:
        raise NotFound("Image introuvable.", code="not_found")
    ret = returns.get_return(return_id)
    data, digest = page_image(ret, number=number, side=side, store=document_store())
    response = Response(data, mimetype="image/png")
    response.set_etag(digest)
    # the images of a return never change (its bytes are fixed, the key holds the format)
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    response.headers["Content-Disposition"] = f'inline; filename="revue-{ret.id}-{number}.png"'
    return response.make_conditional(request)


@bp.post("/revue/<int:return_id>")
@page_roles(*STAFF)
def review_decide(return_id: int) -> Any:
    accept = request.form.get("decision") == "accept"
    try:
        ret = returns.decide(
            return_id,
            accept=accept,
            reason=request.form.get("reason"),
            principal=current_principal(),
            version=form_number(request.form.get("version", "")),
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.review", return_id=return_id))
    flash("Retour accepté." if accept else "Retour refusé.")
    return redirect(url_for("pages.employer_page", siret=ret.kit.employer.siret))


# -- CDG-wide campaigns ----------------------------------------------------------------------


@bp.post("/lots")
@page_roles(*STAFF)
def batch_start() -> Any:
    cdg = reference.get_cdg(request.form.get("cdg", ""))
    if not _confirmed():
        flash(
            "Cochez la case de confirmation : l'émission envoie un kit à chaque employeur du "
            "CDG qui n'en a pas.",
            "error",
        )
        return redirect(url_for("pages.index", cdg=cdg.code))
    try:
        run = campaigns.start_campaign(cdg.code, actor=current_principal().actor)
    except ServiceError as exc:
        db.session.rollback()
        if exc.code == "campaign_running":
            flash(exc.message, "error")
        else:
            flash("Tous les employeurs de ce CDG ont déjà un kit.")
        return redirect(url_for("pages.index", cdg=cdg.code))
    return redirect(url_for("pages.batch_page", run_id=run.id))


@bp.get("/lots/<int:run_id>")
@page_roles(*STAFF)
def batch_page(run_id: int) -> Any:
    run = campaigns.get_campaign(run_id)  # 404 « Campagne introuvable. »
    counts = campaigns.settle(run)  # finished once nothing is pending, whoever ran the last job
    db.session.commit()
    return render_template(
        "batch.html",
        run=run,
        counts=counts,
        failures=campaigns.failures(run),
        workers=len(live_workers()) if counts.pending else None,
        waiting=campaigns.waiting_for_prerequisites(run.cdg_code),  # hE
    )


@bp.post("/lots/<int:run_id>/relance")
@page_roles(*STAFF)
def batch_retry(run_id: int) -> Any:
    run = campaigns.get_campaign(run_id)
    try:
        retried = campaigns.retry_failed(run)
        db.session.commit()
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.batch_page", run_id=run_id))
    flash(f"{counted(retried, 'kit')} en échec {agree(retried, 'relancé')}.")
    return redirect(url_for("pages.batch_page", run_id=run_id))
