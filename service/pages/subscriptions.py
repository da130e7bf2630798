"""Pages of the subscription request (DSC): the public form of a CDG, the contact's e-mail link,
and staff's list, detail (files as page images) and decision; prerequisites on the employer's
page. Thin views over `service.subscriptions`."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from service import formatting, labels
from service.backends import document_store
from service.errors import InvalidInput, NotFound, ServiceError
from service.extensions import db
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp
from service.pages.published import file_size
from service.pages.staff import (
    FORM_ORDER,
    employer_form_errors,
    form_number,
)
from service.reference import domain as reference
from service.reference.models import Convention
from service.returns.preview import stored_pdf_page
from service.subscriptions import actions, domain
from service.subscriptions.files import CONTENT_TYPES
from service.subscriptions.models import PREREQUISITE_KINDS
from signing.sandbox import Limits

STAFF = ("admin", "staff")
PREVIEW_PAGES = 10
PREVIEW_LIMITS = Limits(seconds=30.0, memory_mb=1024)


# -- the public form ---------------------------------------------------------------------------


def _conventions(cdg_id: int) -> list[Convention]:
    return list(
        db.session.scalars(
            select(Convention).where(Convention.cdg_id == cdg_id).order_by(Convention.starts_on)
        )
    )


@bp.route("/cdg/<code>/souscription", methods=["GET", "POST"])
def subscription_form(code: str) -> Any:
    """No sign-in: a collectivité's request, through the API's schema and domain function."""
    cdg = reference.get_cdg(code)
    conventions = _conventions(cdg.id)
    values: dict[str, Any] = {"mode": "flat"}
    if len(conventions) == 1:
        values["convention_id"] = str(conventions[0].id)
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = request.form.to_dict()
        convention_id = form_number(values.get("convention_id", ""))
        convention = next((c for c in conventions if c.id == convention_id), None)
        employer, errors = employer_form_errors(values, convention)
        for name in ("contact_name", "contact_email"):
            if not values.get(name, "").strip():
                errors.setdefault(name, "Ce champ est obligatoire.")
        if employer is not None and not errors:
            try:
                data = actions.parse_data(
                    {
                        **json.loads(employer.model_dump_json()),
                        "contact_name": values.get("contact_name", ""),
                        "contact_email": values.get("contact_email", ""),
                    }
                )
                actions.submit(cdg.code, data, actions.read_uploads())
            except ServiceError as exc:
                db.session.rollback()
                if exc.status == 429:
                    raise
                errors[exc.field or "form"] = exc.message
            else:
                return redirect(url_for("pages.subscription_sent", code=cdg.code))
    first = next((n for n in (*FORM_ORDER, *_EXTRA_FIELDS) if n in errors), None)
    return render_template(
        "subscription_form.html",
        cdg=cdg,
        conventions=conventions,
        values=values,
        errors=errors,
        first_error=first,
        files=labels.SUBSCRIPTION_FILES,
    )


_EXTRA_FIELDS = ("contact_name", "contact_email", "deliberation", "cst_opinion", "premium_elements")


@bp.get("/cdg/<code>/souscription/envoyee")
def subscription_sent(code: str) -> Any:
    return render_template("subscription_sent.html", cdg=reference.get_cdg(code))


@bp.route("/cdg/<code>/souscription/confirmation", methods=["GET", "POST"])
def subscription_confirm(code: str) -> Any:
    """The e-mailed link: the page asks for a click (a mail scanner opening the link confirms
    nothing), the POST confirms."""
    cdg = reference.get_cdg(code)
    token = request.values.get("jeton", "")
    error = None
    done = False
    if request.method == "POST":
        try:
            domain.confirm_request(token=token, address=request.remote_addr)
            done = True
        except ServiceError as exc:
            db.session.rollback()
            error = exc.message
    else:
        try:
            row = domain.find_by_token(token) if token else None
        except NotFound as exc:
            row, error = None, exc.message
        if token == "":
            error = "Lien de confirmation incomplet : ouvrez le lien reçu par courriel."
        elif row is not None and row.status != "unconfirmed":
            error = "Ce lien a déjà servi : votre demande est transmise au gestionnaire."
    return render_template(
        "subscription_confirm.html", cdg=cdg, token=token, error=error, done=done
    )


# -- staff -------------------------------------------------------------------------------------


@bp.get("/souscriptions")
@page_roles(*STAFF)
def subscription_list() -> Any:
    status = request.args.get("etat", "submitted")
    if status not in ("submitted", "accepted", "refused"):
        status = "submitted"
    return render_template(
        "subscription_list.html",
        items=domain.list_requests(status=status),
        status=status,
        states=labels.SUBSCRIPTION_STATES,
    )


@bp.get("/souscriptions/<int:request_id>")
@page_roles(*STAFF)
def subscription_page(request_id: int) -> Any:
    row = domain.get_request(request_id)
    return render_template(
        "subscription.html",
        row=row,
        rows=domain.request_summary_rows(row),
        files=labels.SUBSCRIPTION_FILES,
        state=labels.subscription_state(row.status),
        preview_pages=PREVIEW_PAGES,
        update=domain.employer_update(row) if row.status == "submitted" else None,
        file_size=file_size,
    )


@bp.post("/souscriptions/<int:request_id>")
@page_roles(*STAFF)
def subscription_decide(request_id: int) -> Any:
    accept = request.form.get("decision") == "accept"
    try:
        row = actions.decide(
            request_id,
            accept=accept,
            reason=request.form.get("reason"),
            principal=current_principal(),
            version=form_number(request.form.get("version", "")),
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("pages.subscription_page", request_id=request_id))
    if accept:
        flash("Demande acceptée : l'employeur est enregistré avec ses pièces préalables.")
        return redirect(url_for("pages.employer_page", siret=row.siret))
    flash("Demande refusée : le motif est envoyé au contact.")
    return redirect(url_for("pages.subscription_list"))


@bp.get("/souscriptions/<int:request_id>/fichiers/<field>")
@page_roles(*STAFF)
def subscription_file_page(request_id: int, field: str) -> Response:
    row = domain.get_request(request_id)
    item = domain.request_file(row, field)
    name = domain.request_file_name(row, field)
    return actions.stream(item["key"], CONTENT_TYPES[item["format"]], name, item["size"])


@bp.get("/souscriptions/<int:request_id>/fichiers/<field>/pages/<int:number>.png")
def subscription_page_image(request_id: int, field: str, number: int) -> Response:
    """A page of a request's PDF, drawn on the server in the sandbox (the file is never opened
    in the browser); staff only, a 404 for anyone else. Cached in the document store."""
    who = current_principal()
    if who is None or who.role not in STAFF:
        raise NotFound("Image introuvable.", code="not_found")
    row = domain.get_request(request_id)
    item = domain.request_file(row, field)
    if item["format"] != "pdf" or not 1 <= number <= min(item.get("pages") or 0, PREVIEW_PAGES):
        raise NotFound("Image introuvable.", code="not_found")
    data = stored_pdf_page(
        store=document_store(),
        pdf_key=item["key"],
        prefix=f"previews/subscriptions/{row.id}/{field}-{item['sha256'][:16]}",
        number=number,
        max_pages=PREVIEW_PAGES,
        limits=PREVIEW_LIMITS,
    )
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response


# -- prerequisites on the employer's page ------------------------------------------------------


@bp.post("/employeurs/<siret>/pieces")
@page_roles(*STAFF)
def employer_prerequisite_upload(siret: str) -> Any:
    employer = reference.get_employer(siret)
    kind = request.form.get("kind", "")
    try:
        if kind not in PREREQUISITE_KINDS:
            raise InvalidInput("Choisissez la pièce reçue.", code="unknown_prerequisite")
        actions.receive(
            employer,
            kind,
            received_on=actions.parse_received_on(request.form.get("received_on")),
            principal=current_principal(),
        )
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        flash(f"Pièce enregistrée : {labels.prerequisite_lower(kind)}.")
    return redirect(url_for("pages.employer_page", siret=employer.siret) + "#pieces")


@bp.get("/employeurs/<siret>/pieces/<kind>")
@page_roles(*STAFF)
def employer_prerequisite_file(siret: str, kind: str) -> Response:
    employer = reference.get_employer(siret)
    row = domain.get_prerequisite(employer, kind)
    return actions.stream(
        row.storage_key,
        CONTENT_TYPES[row.format],
        domain.prerequisite_file_name(employer, row),
        row.size,
    )


@bp.app_template_global()
def prerequisites_for(employer: Any) -> dict[str, Any]:
    """What the employer's page shows of its prerequisites (its template's hE block)."""
    status = domain.prerequisites_of(employer)
    return {
        "prerequisites": status,
        "prerequisite_kinds": {k: labels.prerequisite(k) for k in PREREQUISITE_KINDS},
        "prerequisite_sources": labels.PREREQUISITE_SOURCES,
    }


bp.add_app_template_filter(formatting.long_date, "prerequisite_day")
