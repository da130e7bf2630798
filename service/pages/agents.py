"""The employer's agents in its portal space (issue 11, hB): « Mes agents » (state, search,
export, departures), « Inscrire un agent » with its confirmation step, and the import."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from service import labels
from service.accounts.auth import Principal
from service.agents import domain, importing
from service.agents.models import AGENT_CATEGORIES, AGENT_STATUSES, MEMBERSHIP_STATES
from service.agents.schemas import BOOLEAN_FIELDS, IMPORT_COLUMNS, LeaveIn, MembershipIn
from service.api import field_errors
from service.csvfile import csv_text
from service.errors import InvalidInput, ServiceError
from service.extensions import db
from service.formatting import long_date
from service.kits.domain import current_kit
from service.kits.lifecycle import pieces_signed
from service.pages.auth import current_principal, page_roles
from service.pages.blueprint import bp
from service.reference.domain import convention_options, get_employer
from service.reference.models import Employer
from service.wording import counted

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: the form's steps: fill in, check the amounts, record
PREVIEW, CONFIRM, EDIT = "verifier", "enregistrer", "modifier"


def _who() -> Principal:
    return current_principal()  # type: ignore[return-value]  (page_roles let only employers in)


def _employer() -> Employer:
    who = _who()
    return get_employer(who.siret or "", principal=who)


def _joined(employer: Employer) -> bool:
    return pieces_signed(current_kit(employer))


def _form_values(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form's fields as typed (checkboxes `oui`, options as a list)."""
    values: dict[str, Any] = {name: form.get(name, "").strip() for name in IMPORT_COLUMNS}
    for name in BOOLEAN_FIELDS:
        values[name] = "oui" if form.get(name) == "oui" else "non"
    values["options"] = form.getlist("options")
    return values


def _parse(values: dict[str, Any]) -> tuple[MembershipIn | None, dict[str, str]]:
    cells = dict(values, options=",".join(values["options"]))
    try:
        return MembershipIn.model_validate(importing.row_fields(cells)), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in field_errors(exc):
            errors.setdefault((error.field or "form").rsplit(".", 1)[-1], error.message)
        return None, errors


def _field_errors(found: list[InvalidInput]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in found:
        name = (error.field or "form").rsplit(".", 1)[-1]
        errors.setdefault(name if name in labels.MEMBERSHIP_FIELDS else "form", error.message)
    return errors


def _form_page(
    employer: Employer,
    values: dict[str, Any],
    errors: dict[str, str],
    quote: Any = None,
    joins_on: Any = None,
) -> Any:
    page = render_template(
        "agent_form.html",
        employer=employer,
        values=values,
        errors=errors,
        first_error=next(iter(errors), None),
        quote=quote,
        joins_on=joins_on,
        options=convention_options(employer.convention),
        statuses={s: labels.agent_status(s) for s in AGENT_STATUSES},
        categories={c: labels.agent_category(c) for c in AGENT_CATEGORIES},
        field_labels=labels.MEMBERSHIP_FIELDS,
        joined=_joined(employer),
        steps=(PREVIEW, CONFIRM, EDIT),
    )
    return page  # errors shown next to their fields, like the staff's forms


@bp.get("/portail/agents")
@page_roles("employer")
def portal_agents() -> Any:
    employer = _employer()
    q = request.args.get("q", "").strip()
    state = request.args.get("etat", "")
    if state not in MEMBERSHIP_STATES:
        state = ""
    total, items = domain.list_memberships(employer=employer, q=q, state=state or None, limit=500)
    return render_template(
        "agents_list.html",
        employer=employer,
        items=items,
        total=total,
        q=q,
        state=state,
        states={s: labels.membership_state(s) for s in MEMBERSHIP_STATES},
        joined=_joined(employer),
        left_state=domain.LEFT,
    )


@bp.get("/portail/agents/export.csv")
@page_roles("employer")
def portal_agents_export() -> Response:
    employer = _employer()
    return Response(
        csv_text(domain.EXPORT_HEADERS, domain.export_rows(employer)),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agents-{employer.siret}.csv"'},
    )


@bp.route("/portail/agents/nouveau", methods=["GET", "POST"])
@page_roles("employer")
def portal_agent_new() -> Any:
    employer = _employer()
    if request.method == "GET":
        values = {name: "" for name in IMPORT_COLUMNS}
        values.update(
            {name: "non" for name in BOOLEAN_FIELDS},
            in_normal_service="oui",
            options=[],
            joins_on=domain.default_joins_on(employer).isoformat(),
        )
        return _form_page(employer, values, {})
    values = _form_values(request.form)
    step = request.form.get("etape", PREVIEW)
    data, errors = _parse(values)
    if data is None:
        return _form_page(employer, values, errors)
    try:
        quote, found = domain.check_membership(employer=employer, data=data)
    except ServiceError as exc:  # not joined yet
        return _form_page(employer, values, {"form": exc.message})
    if found:
        return _form_page(employer, values, _field_errors(found))
    if step != CONFIRM:
        return _form_page(
            employer, values, {}, quote=None if step == EDIT else quote, joins_on=data.joins_on
        )
    try:
        membership = domain.register_membership(employer=employer, data=data, principal=_who())
    except ServiceError as exc:
        db.session.rollback()
        return _form_page(
            employer,
            values,
            _field_errors([exc]) if isinstance(exc, InvalidInput) else {"form": exc.message},
        )
    db.session.commit()
    flash(
        f"Adhésion {membership.reference} enregistrée pour {membership.first_name} "
        f"{membership.last_name} : un courriel l'invite à créer son espace personnel."
    )
    return redirect(url_for("pages.portal_agents"))


@bp.post("/portail/agents/<int:membership_id>/depart")
@page_roles("employer")
def portal_agent_leave(membership_id: int) -> Any:
    membership = domain.get_membership(membership_id, principal=_who())
    try:
        data = LeaveIn.model_validate(
            {
                "left_on": request.form.get("left_on") or None,
                "reason": request.form.get("reason", ""),
            }
        )
        domain.leave_membership(membership=membership, data=data, principal=_who())
    except ValidationError as exc:
        error = field_errors(exc)[0]
        name = "date de départ" if (error.field or "").startswith("left_on") else "motif"
        flash(f"Départ non enregistré ({name}) : {error.message}", "error")
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Départ non enregistré : {exc.message}", "error")
    else:
        db.session.commit()
        flash(
            f"Départ de {membership.first_name} {membership.last_name} enregistré au "
            f"{long_date(membership.left_on)}."
        )
    return redirect(url_for("pages.portal_agents"))


@bp.route("/portail/agents/import", methods=["GET", "POST"])
@page_roles("employer")
def portal_agents_import() -> Any:
    employer = _employer()
    errors: list[domain.RowError] = []
    message = None
    if request.method == "POST":
        upload = request.files.get("file")
        try:
            if upload is None or not upload.filename:
                raise InvalidInput(
                    "Choisissez le fichier à importer.", code="file_missing", field="file"
                )
            rows = importing.read_import(upload.read(), upload.filename)
            memberships = domain.import_memberships(employer=employer, rows=rows, principal=_who())
        except domain.ImportRejected as exc:
            db.session.rollback()
            errors, message = exc.errors, exc.message
        except ServiceError as exc:
            db.session.rollback()
            message = exc.message
        else:
            db.session.commit()
            count = len(memberships)
            flash(
                f"{counted(count, 'adhésion')} enregistrée{'s' if count > 1 else ''} : "
                "chaque agent reçoit un courriel pour créer son espace personnel."
            )
            return redirect(url_for("pages.portal_agents"))
    page = render_template(
        "agents_import.html",
        employer=employer,
        errors=errors,
        message=message,
        columns=IMPORT_COLUMNS,
        field_label=labels.membership_field,
        joined=_joined(employer),
    )
    return page


@bp.get("/portail/agents/modele.csv")
@page_roles("employer")
def portal_agents_template_csv() -> Response:
    return Response(
        importing.template_csv(),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="modele-import-agents.csv"'},
    )


@bp.get("/portail/agents/modele.xlsx")
@page_roles("employer")
def portal_agents_template_xlsx() -> Response:
    return Response(
        importing.template_xlsx(),
        mimetype=XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="modele-import-agents.xlsx"'},
    )


for _name, _filter in {
    "membership_state": labels.membership_state,
    "agent_status": labels.agent_status,
    "agent_category": labels.agent_category,
    "agent_date": long_date,
    "lower_first": lambda text: text[:1].lower() + text[1:],
}.items():
    bp.add_app_template_filter(_filter, _name)
