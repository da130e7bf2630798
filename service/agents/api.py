"""API views for the employers' agents: registration (one, a file, the filled BAI), the list,
one membership, departures, the export and the import's template."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from pydantic import ValidationError

from service import labels
from service.agents import domain, importing
from service.agents.models import MEMBERSHIP_STATES
from service.agents.schemas import LeaveIn, MembershipIn
from service.api import field_errors, json_body, parse, principal, query_int, route
from service.csvfile import csv_text
from service.errors import InvalidInput
from service.extensions import db
from service.reference.domain import get_employer
from service.reference.models import Employer

REGISTRARS = ("admin", "staff", "employer")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _employer(siret: str) -> Employer:
    employer = get_employer(siret, principal=principal())
    domain.require_registrar(principal(), employer)
    return employer


def _upload() -> tuple[bytes, str]:
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput(
            "Joignez le fichier (champ « file »).", code="file_missing", field="file"
        )
    return upload.read(), upload.filename or ""


def _registered(memberships: list[Any]) -> Any:
    """Commit, answering with what was written (read before the commit expires it)."""
    body = {"count": len(memberships), "items": [domain.membership_json(m) for m in memberships]}
    db.session.commit()
    return jsonify(body)


@route(
    "/employers/<siret>/agents",
    ("POST",),
    summary="Inscrire un agent (bulletin d'adhésion individuelle)",
    roles=REGISTRARS,
    body=MembershipIn,
    responses={
        201: "Adhésion enregistrée, courriel de confirmation en file",
        409: "Doublon ou collectivité pas encore adhérente",
    },
)
def register_agent(siret: str) -> Any:
    employer = _employer(siret)
    data = parse(MembershipIn, json_body())
    membership = domain.register_membership(employer=employer, data=data, principal=principal())
    db.session.commit()
    return jsonify(domain.membership_json(membership)), 201


@route(
    "/employers/<siret>/agents/preview",
    ("POST",),
    summary="Calculer la cotisation d'un agent avant de l'inscrire (rien n'est enregistré)",
    roles=REGISTRARS,
    body=MembershipIn,
    responses={
        200: "Cotisation, participation et reste à charge",
        409: "Doublon ou collectivité pas encore adhérente",
    },
)
def preview_agent(siret: str) -> Any:
    employer = _employer(siret)
    data = parse(MembershipIn, json_body())
    return jsonify(domain.quote_json(domain.preview_membership(employer=employer, data=data)))


@route(
    "/employers/<siret>/agents/import",
    ("POST",),
    summary="Importer des adhésions (CSV ou XLSX) : toutes les lignes ou aucune",
    roles=REGISTRARS,
    files=("file",),
    responses={201: "Adhésions enregistrées", 409: "Collectivité pas encore adhérente"},
)
def import_agents(siret: str) -> Any:
    employer = _employer(siret)
    data, filename = _upload()
    rows = importing.read_import(data, filename)
    memberships = domain.import_memberships(employer=employer, rows=rows, principal=principal())
    return _registered(memberships), 201


@route(
    "/employers/<siret>/agents/from-form",
    ("POST",),
    summary="Inscrire un agent depuis son bulletin d'adhésion rempli (PDF du kit)",
    roles=REGISTRARS,
    files=("file",),
    responses={201: "Adhésion enregistrée", 409: "Doublon ou collectivité pas encore adhérente"},
)
def register_from_form(siret: str) -> Any:
    employer = _employer(siret)
    data, _ = _upload()
    extra = {k: v for k, v in request.form.items() if isinstance(v, str)}
    fields = importing.read_enrolment_form(data, convention=employer.convention, extra=extra)
    if not fields.get("joins_on"):
        fields["joins_on"] = domain.default_joins_on(employer).isoformat()
    try:
        data = MembershipIn.model_validate(fields)
    except ValidationError as exc:  # what the form holds is the file's content
        error = field_errors(exc)[0]
        raise InvalidInput(
            f"Bulletin d'adhésion, {labels.membership_field(error.field).lower()} : "
            f"{error.message[:1].lower()}{error.message[1:]}",
            code="invalid_form_field",
            field="file",
        ) from exc
    membership = domain.register_membership(employer=employer, data=data, principal=principal())
    db.session.commit()
    return jsonify(domain.membership_json(membership)), 201


@route(
    "/employers/<siret>/agents",
    summary="Les agents d'un employeur et l'état de leur adhésion",
    roles=REGISTRARS,
    query={
        "state": {
            "description": "état de l'adhésion",
            "schema": {"type": "string", "enum": list(MEMBERSHIP_STATES)},
        },
        "q": "recherche sur le nom, le prénom, le courriel ou la référence",
        "limit": "taille de page (500 au plus)",
        "offset": "décalage",
    },
)
def list_agents(siret: str) -> Any:
    employer = _employer(siret)
    limit = min(query_int("limit", 100), 500)
    offset = query_int("offset", 0)
    total, items = domain.list_memberships(
        employer=employer,
        q=request.args.get("q"),
        state=request.args.get("state"),
        limit=limit,
        offset=offset,
    )
    return jsonify(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [domain.membership_json(m) for m in items],
        }
    )


@route("/employers/<siret>/agents.csv", summary="Export CSV des agents", roles=REGISTRARS)
def export_agents(siret: str) -> Response:
    employer = _employer(siret)
    body = csv_text(domain.EXPORT_HEADERS, domain.export_rows(employer))
    return Response(
        body,
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agents-{employer.siret}.csv"'},
    )


@route("/agents/<int:membership_id>", summary="Une adhésion", roles=REGISTRARS)
def get_agent(membership_id: int) -> Any:
    return jsonify(
        domain.membership_json(domain.get_membership(membership_id, principal=principal()))
    )


@route(
    "/agents/<int:membership_id>/leave",
    ("POST",),
    summary="Enregistrer le départ d'un agent",
    roles=REGISTRARS,
    body=LeaveIn,
    responses={200: "Départ enregistré", 409: "Départ déjà enregistré"},
)
def leave_agent(membership_id: int) -> Any:
    membership = domain.get_membership(membership_id, principal=principal())
    data = parse(LeaveIn, json_body())
    domain.leave_membership(membership=membership, data=data, principal=principal())
    db.session.commit()
    return jsonify(domain.membership_json(membership))


@route("/agents/import-template.csv", summary="Modèle d'import des agents (CSV)", roles=REGISTRARS)
def import_template_csv() -> Response:
    return Response(
        importing.template_csv(),
        mimetype="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="modele-import-agents.csv"'},
    )


@route(
    "/agents/import-template.xlsx", summary="Modèle d'import des agents (XLSX)", roles=REGISTRARS
)
def import_template_xlsx() -> Response:
    return Response(
        importing.template_xlsx(),
        mimetype=XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="modele-import-agents.xlsx"'},
    )
