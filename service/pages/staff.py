"""Pages of the manager's production staff: dashboard, employers, kits, review, countersign."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select

from service.audit.domain import kit_events
from service.backends import document_store
from service.downloads import stream_object
from service.errors import InvalidInput, NotFound, ServiceError
from service.extensions import db
from service.formatting import group_code, long_date
from service.kits import domain as kits
from service.kits.actions import issue_many, issue_one
from service.kits.models import Kit
from service.mail import notify
from service.pages.auth import current_principal, page_roles, sign_in_user, sign_out
from service.pages.blueprint import bp
from service.pages.models import BatchRun
from service.reference import domain as reference
from service.reference.listing import list_employers
from service.reference.models import Convention, Employer
from service.reference.schemas import EMPLOYER_KINDS
from service.reference.simulation import EXCLUDED, simulate
from service.returns import domain as returns
from service.returns.actions import countersign_and_archive
from service.returns.models import AccessThrottle, KitReturn
from service.returns.preview import page_image, review_preview
from service.timeutil import utcnow

STAFF = ("admin", "staff")
STATUS_LABELS = {
    "none": "Pas de kit",
    "issued": "Émis",
    "employer_signed": "Signé par la collectivité",
    "countersigned": "Contresigné",
    "archived": "Archivé",
    "superseded": "Remplacé",
}
STALE_BATCH = timedelta(minutes=30)
PARIS = ZoneInfo("Europe/Paris")
RETURN_LABELS = {"accepted": "Accepté", "pending_review": "À revoir", "refused": "Refusé"}


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {
        "who": current_principal(),
        "status_labels": STATUS_LABELS,
        "return_labels": RETURN_LABELS,
        "kinds": EMPLOYER_KINDS,
    }


# -- sign-in ---------------------------------------------------------------------------------


@bp.route("/connexion", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        try:
            user = sign_in_user(request.form.get("email", ""), request.form.get("password", ""))
        except ServiceError as exc:
            error = exc.message
        else:
            target = request.args.get("suivant", "")
            if not target.startswith("/") or target.startswith("//"):
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
            days = int(waiting) if waiting.isdigit() else 0
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
        batches=db.session.scalars(select(BatchRun).order_by(BatchRun.id.desc()).limit(3)).all(),
    )


def _waiting_days(kit: Kit | None) -> int:
    if kit is None or kit.status not in ("issued", "employer_signed"):
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


@bp.route("/employeurs/nouveau", methods=["GET", "POST"])
@page_roles(*STAFF)
def employer_new() -> Any:
    conventions = db.session.scalars(select(Convention).order_by(Convention.id)).all()
    values: dict[str, Any] = {"mode": "flat"}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            convention = db.session.get(Convention, int(values.get("convention_id") or 0))
            if convention is None:
                raise InvalidInput(
                    "Choisissez une convention.", code="unknown_convention", field="convention_id"
                )
            dates = {}
            for name in ("cst_opinion_on", "deliberation_on", "joins_on"):
                raw = values.get(name, "").strip()
                if raw:
                    try:
                        dates[name] = date.fromisoformat(raw)
                    except ValueError as exc:
                        raise InvalidInput(
                            "Date invalide.", code="invalid_field", field=name
                        ) from exc
                elif name != "joins_on":
                    raise InvalidInput(
                        "Ce champ est obligatoire.", code="invalid_field", field=name
                    )
            try:
                headcount = int(values.get("headcount", ""))
            except ValueError as exc:
                raise InvalidInput(
                    "Nombre entier attendu.", code="invalid_field", field="headcount"
                ) from exc
            for name in ("name", "address", "email"):
                if not values.get(name, "").strip():
                    raise InvalidInput(
                        "Ce champ est obligatoire.", code="invalid_field", field=name
                    )
            employer = reference.create_employer(
                siret=values.get("siret", ""),
                name=values["name"].strip(),
                kind=values.get("kind", ""),
                address=values["address"].strip(),
                email=values["email"].strip(),
                cdg=convention.cdg.code,
                convention_id=convention.id,
                headcount=headcount,
                cst_opinion_on=dates["cst_opinion_on"],
                deliberation_on=dates["deliberation_on"],
                joins_on=dates.get("joins_on"),
                contribution=_contribution_from_form(values),
            )
            db.session.commit()
        except ServiceError as exc:
            db.session.rollback()
            errors[(exc.field or "form").split(".")[0]] = exc.message
            if exc.field and exc.field.startswith("contribution"):
                errors["contribution"] = exc.message
        else:
            flash(f"Employeur « {employer.name} » créé.")
            return redirect(url_for("pages.employer_page", siret=employer.siret))
    return render_template(
        "employer_form.html", conventions=conventions, values=values, errors=errors
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
    throttle = db.session.get(AccessThrottle, f"siret:{siret}")
    locked = throttle is not None and (
        throttle.locked
        or (throttle.blocked_until is not None and throttle.blocked_until > utcnow())
    )
    return render_template(
        "employer.html", employer=employer, kit=kit, returns=kit_returns, locked=locked
    )


@bp.post("/employeurs/<siret>/kit")
@page_roles(*STAFF)
def employer_issue(siret: str) -> Any:
    employer = reference.get_employer(siret)
    issued = issue_one(employer, actor=current_principal().actor)
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


@bp.get("/kits/<int:kit_id>/documents/<kind>.pdf")
@page_roles(*STAFF, "cdg")
def kit_document(kit_id: int, kind: str) -> Response:
    kit = kits.get_kit(kit_id, principal=current_principal())
    doc = kits.get_document(kit, kind)
    return stream_object(doc.pdf_key, "application/pdf", f"{kit.reference}-{kind}.pdf", doc.size)


@bp.get("/retours/<int:return_id>.pdf")
@page_roles(*STAFF)
def return_file(return_id: int) -> Response:
    """A download, never shown inline: an uploaded PDF must not run in staff's browser."""
    ret = returns.get_return(return_id)
    if ret.quarantined:
        raise NotFound("Retour introuvable.", code="unknown_return")
    response = stream_object(
        ret.countersigned_key or ret.storage_key,
        "application/pdf",
        f"retour-{ret.id}.pdf",
        None,
    )
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.post("/kits/<int:kit_id>/contreseing")
@page_roles(*STAFF)
def kit_countersign(kit_id: int) -> Any:
    kit = kits.get_kit(kit_id, principal=current_principal())
    try:
        countersign_and_archive(kit_id, principal=current_principal())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        flash("Kit contresigné.")
    return redirect(url_for("pages.employer_page", siret=kit.employer.siret))


@bp.get("/kits/<int:kit_id>/journal")
@page_roles(*STAFF, "cdg")
def kit_audit(kit_id: int) -> Any:
    kit = kits.get_kit(kit_id, principal=current_principal())
    return render_template("audit.html", kit=kit, events=kit_events(kit.id))


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
    preview = review_preview(ret, store=document_store())
    received = ret.uploaded_at.replace(tzinfo=UTC).astimezone(PARIS)
    return render_template(
        "review.html",
        ret=ret,
        issued=issued,
        preview=preview,
        received=f"{long_date(received.date())} à {received:%H} h {received:%M}",
        sender=_sender(ret.uploaded_by),
    )


def _sender(actor: str) -> str:
    """Who sent a return, as a person reads it (never `employer:…`)."""
    kind, _, who = actor.partition(":")
    if kind == "employer":
        return "déposé par la collectivité sur son portail"
    if kind in STAFF:
        return f"déposé par {who} (production)"
    return "déposé"


@bp.get("/revue/<int:return_id>/pages/<int:number>-<side>.png")
def review_page_image(return_id: int, number: int, side: str) -> Response:
    """One page image of the review; staff only, a 404 for anyone else (an image, no sign-in)."""
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
            version=int(request.form.get("version") or 0) or None,
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.review", return_id=return_id))
    if not accept:
        notify.return_refused(ret.kit, ret.kind, ret.decision_reason or "")
    flash("Retour accepté." if accept else "Retour refusé.")
    return redirect(url_for("pages.employer_page", siret=ret.kit.employer.siret))


# -- CDG-wide batches ------------------------------------------------------------------------


@bp.post("/lots")
@page_roles(*STAFF)
def batch_start() -> Any:
    cdg = reference.get_cdg(request.form.get("cdg", ""))
    employers = kits.employers_without_kit(cdg.code)
    if not employers:
        flash("Tous les employeurs de ce CDG ont déjà un kit.")
        return redirect(url_for("pages.index", cdg=cdg.code))
    run = BatchRun(cdg_code=cdg.code, total=len(employers), started_by=current_principal().actor)
    db.session.add(run)
    db.session.commit()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    threading.Thread(
        target=_run_batch,
        args=(app, run.id, [e.id for e in employers]),
        daemon=True,
        name=f"batch-{run.id}",
    ).start()
    return redirect(url_for("pages.batch_page", run_id=run.id))


def _run_batch(app: Any, run_id: int, employer_ids: list[int]) -> None:
    with app.app_context():
        run = db.session.get(BatchRun, run_id)
        employers = [db.session.get(Employer, i) for i in employer_ids]

        def done(employer: Employer, kit: Any, error: BaseException | None) -> None:
            current = db.session.get(BatchRun, run_id)
            if error is not None:
                current.failed += 1
                current.errors = [*current.errors, f"{employer.name} : {error}"][:50]
            else:
                current.done += 1
            db.session.commit()

        try:
            issue_many(
                [e for e in employers if e is not None],
                actor=run.started_by,
                on_done=done,
                start_method="spawn",
            )
            status = "done"
        except Exception:  # reported on the page; the thread must not die silently
            current_app.logger.exception("batch %s failed", run_id)
            db.session.rollback()
            status = "failed"
        run = db.session.get(BatchRun, run_id)
        run.status, run.finished_at = status, utcnow()
        db.session.commit()


@bp.get("/lots/<int:run_id>")
@page_roles(*STAFF)
def batch_page(run_id: int) -> Any:
    run = db.session.get(BatchRun, run_id)
    if run is None:
        abort(404)
    if run.status == "running" and utcnow() - run.started_at > STALE_BATCH + timedelta(
        seconds=10 * run.total
    ):  # its web worker was restarted: the kits issued so far are kept
        run.status, run.finished_at = "interrupted", utcnow()
        db.session.commit()
    return render_template("batch.html", run=run)
