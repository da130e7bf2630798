"""The agents' space `/adherent`: activation from the e-mailed link, sign-in, the agent's
memberships with their premium breakdown, the certificate and the notice, the beneficiary
designation with its history, sign-out. Thin views over `service.agents.space`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from service import formatting, labels
from service.agents import certificate, space
from service.agents.models import Membership
from service.agents.space_schemas import DesignationIn, beneficiaries
from service.api import field_errors
from service.backends import settings
from service.downloads import stream_object
from service.errors import ServiceError, TooManyRequests, Unavailable
from service.extensions import db
from service.pages.auth import (
    current_principal,
    page_roles,
    safe_next_path,
    sign_in_agent,
    sign_out,
)
from service.pages.blueprint import bp

#: blank rows the designation form offers when it has none to show
BLANK_ROWS = 2


def _throttled(template: str, exc: TooManyRequests, **context: Any) -> Any:
    page = render_template(template, error=exc.message, **context)
    return page, 429, {"Retry-After": str(exc.retry_after or 60)}


@bp.route("/adherent/connexion", methods=["GET", "POST"])
def agent_login() -> Any:
    error = None
    values = {"email": request.form.get("email", "")}
    target = safe_next_path(request.args.get("suivant"))
    if request.method == "POST":
        try:
            account = space.sign_in(
                email=request.form.get("email", ""),
                password=request.form.get("password", ""),
                address=request.remote_addr,
            )
        except TooManyRequests as exc:
            return _throttled("agent_login.html", exc, values=values)
        except Unavailable:
            raise
        except ServiceError as exc:
            error = exc.message
        else:
            sign_in_agent(account.id)
            if target and target.startswith("/adherent"):
                return redirect(target)
            return redirect(url_for("pages.agent_home"))
    return render_template("agent_login.html", error=error, values=values)


@bp.post("/adherent/deconnexion")
def agent_logout() -> Any:
    sign_out()
    flash("Vous êtes déconnecté.")
    return redirect(url_for("pages.agent_login"))


@bp.route("/adherent/activation", methods=["GET", "POST"])
def agent_activation() -> Any:
    token = request.values.get("jeton", "")
    try:
        info = space.link_info(token)
    except ServiceError as exc:
        db.session.rollback()
        page = render_template("agent_activation.html", info=None, token="", error=exc.message)
        return page, exc.status
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password", "")
        if not info.has_account and password != request.form.get("confirmation", ""):
            errors["confirmation"] = "Les deux mots de passe saisis diffèrent."
        else:
            try:
                done = space.activate(token=token, password=password, address=request.remote_addr)
                db.session.commit()
            except TooManyRequests as exc:
                db.session.rollback()
                return _throttled("agent_activation.html", exc, info=info, token=token, errors={})
            except Unavailable:
                raise
            except ServiceError as exc:
                db.session.rollback()
                errors[exc.field or "password"] = exc.message
            else:
                sign_in_agent(done.account.id)
                flash(
                    "Votre compte est créé : bienvenue dans votre espace."
                    if done.created
                    else "Votre adhésion est rattachée à votre compte."
                )
                return redirect(url_for("pages.agent_home"))
    status = 422 if errors else 200
    return render_template(
        "agent_activation.html", info=info, token=token, errors=errors, error=None
    ), status


@bp.get("/adherent")
@page_roles("agent")
def agent_home() -> Any:
    who = current_principal()
    memberships = [space.membership_summary(m) for m in space.agent_memberships(who)]
    return render_template("agent_home.html", memberships=memberships)


def _membership(membership_id: int) -> Membership:
    return space.agent_membership(current_principal(), membership_id)


@bp.get("/adherent/adhesions/<int:membership_id>/certificat.pdf")
@page_roles("agent")
def agent_certificate_page(membership_id: int) -> Response:
    membership = _membership(membership_id)
    pdf = certificate.membership_certificate(membership, zone=settings().timezone)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{certificate.file_name(membership)}"'
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/adherent/adhesions/<int:membership_id>/notice.pdf")
@page_roles("agent")
def agent_notice(membership_id: int) -> Response:
    doc = space.membership_notice(_membership(membership_id))
    return stream_object(
        doc.pdf_key,
        "application/pdf",
        labels.download_name(doc.kit.reference, "information-notice"),
        doc.size,
    )


def _form_rows() -> list[dict[str, str]]:
    """The named beneficiaries typed in the form, blank rows left out."""
    columns = {
        name: request.form.getlist(name) for name in ("name", "birth_date", "relationship", "share")
    }
    count = max((len(v) for v in columns.values()), default=0)
    rows = []
    for i in range(count):
        row = {
            name: (values[i] if i < len(values) else "").strip() for name, values in columns.items()
        }
        if row["name"] or row["birth_date"] or row["share"]:
            rows.append(row)
    return rows


@bp.route("/adherent/adhesions/<int:membership_id>/beneficiaires", methods=["GET", "POST"])
@page_roles("agent")
def agent_beneficiaries_page(membership_id: int) -> Any:
    membership = _membership(membership_id)
    summary = space.beneficiaries_summary(membership)
    errors: list[str] = []
    clause = (summary["current"] or {}).get("clause", "standard")
    rows: list[dict[str, str]] = [
        {k: b[k] for k in ("name", "birth_date", "relationship", "share")}
        for b in (summary["current"] or {}).get("beneficiaries", [])
    ]
    if request.method == "POST":
        clause = request.form.get("clause", "")
        rows = _form_rows()
        data = {
            "clause": clause,
            "beneficiaries": [{**row, "share": row["share"].replace(" ", "")} for row in rows]
            if clause == "specific"
            else [],
        }
        try:
            parsed = DesignationIn.model_validate(data)
            space.designate_beneficiaries(
                principal=current_principal(),
                membership_id=membership.id,
                clause=parsed.clause,
                beneficiaries=beneficiaries(parsed),
                address=request.remote_addr,
            )
            db.session.commit()
        except ValidationError as exc:
            errors = [_row_message(e) for e in field_errors(exc)]
        except ServiceError as exc:
            db.session.rollback()
            errors = [exc.message]
        else:
            flash("Votre désignation de bénéficiaires est enregistrée.")
            return redirect(url_for("pages.agent_beneficiaries_page", membership_id=membership.id))
    while len(rows) < BLANK_ROWS:
        rows.append({"name": "", "birth_date": "", "relationship": "", "share": ""})
    page = render_template(
        "agent_beneficiaries.html",
        membership=space.membership_summary(membership),
        summary=summary,
        clause=clause,
        rows=rows,
        errors=errors,
        relationships=labels.RELATIONSHIPS,
        standard_clause=labels.STANDARD_CLAUSE,
    )
    return page, 422 if errors else 200


_FIELD_NAMES = {
    "name": "nom",
    "birth_date": "date de naissance",
    "relationship": "lien",
    "share": "part",
    "clause": "clause",
}


def _row_message(error: ServiceError) -> str:
    """`beneficiaries.1.birth_date` → « Bénéficiaire n° 2, date de naissance : … »."""
    parts = (error.field or "").split(".")
    if len(parts) == 3 and parts[0] == "beneficiaries" and parts[1].isdigit():
        what = _FIELD_NAMES.get(parts[2], "champ")
        return f"Bénéficiaire n° {int(parts[1]) + 1}, {what} : {error.message}"
    if parts and parts[0] in _FIELD_NAMES:
        return f"{_FIELD_NAMES[parts[0]].capitalize()} : {error.message}"
    return error.message


def _long_date_iso(value: str | None) -> str:
    """`2025-03-01` → `1er mars 2025` (the summaries carry ISO dates, as the API does)."""
    return formatting.long_date(date.fromisoformat(value)) if value else ""


def _when_iso(value: str | None) -> str:
    """An ISO UTC time of the summaries → Paris time as people read it."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    local = labels.paris(moment)
    assert local is not None
    return f"{labels.long_day(moment)} à {local.hour} h {local:%M}"


bp.add_app_template_filter(_long_date_iso, "long_date_iso")
bp.add_app_template_filter(_when_iso, "when_iso")
