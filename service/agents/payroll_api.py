"""API views for payroll and follow-up: the employer's payroll settings and monthly file, the
CDG's summary of agents' memberships, and the bulk re-send of confirmation e-mails."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from service.agents.invitations import resend_invitations
from service.agents.payroll import (
    PAYROLL_FILE,
    SETTINGS_FILE,
    parse_month,
    payroll_csv,
    payroll_json,
    payroll_month,
    payroll_settings,
    record_payroll_download,
    render_settings_pdf,
)
from service.agents.summary import agents_summary
from service.api import json_body, parse, principal, route
from service.downloads import csv_attachment
from service.extensions import db
from service.ratelimit import Rule, limiter
from service.reference.domain import get_cdg, get_employer
from service.reference.models import Employer
from service.schema_types import DATABASE_ID, documented

EMPLOYER_OR_STAFF = ("admin", "staff", "employer")
CDG_OR_STAFF = ("admin", "staff", "cdg")
#: what `parse_month` accepts: AAAA-MM from 2000
MONTH_SCHEMA = {"type": "string", "pattern": "^[2-9][0-9]{3}-(0[1-9]|1[0-2])$"}
MONTH_QUERY = {"description": "le mois, AAAA-MM", "required": True, "schema": MONTH_SCHEMA}
#: re-sending the confirmation e-mails, per employer: a few times an hour, never a mail bomb
RESEND_INVITATIONS = Rule.of("agent-invitations", "3/hour; 10/day")


class InvitationsIn(BaseModel):
    """Which memberships get their confirmation e-mail again: every eligible one by default."""

    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2_147_483_647)]] | None = Field(
        default=None,
        max_length=100_000,
        json_schema_extra=documented(
            {"type": "array", "items": DATABASE_ID, "maxItems": 100_000}, nullable=True
        ),
    )


def _downloaded(employer: Employer, file: str, data: bytes, *, month: date | None = None) -> None:
    record_payroll_download(
        employer,
        file=file,
        data=data,
        actor=principal().actor,
        address=request.remote_addr,
        month=month,
    )
    db.session.commit()


def _employer(siret: str) -> Employer:
    """The employer the caller may see: its own for an employer, any for staff (else 404)."""
    return get_employer(siret, principal=principal())


@route(
    "/employers/<siret>/payroll-settings.json",
    summary="Paramétrage de la paie (DSN) du contrat de prévoyance",
    roles=EMPLOYER_OR_STAFF,
)
def payroll_settings_json(siret: str) -> Any:
    return jsonify(payroll_settings(_employer(siret)))


@route(
    "/employers/<siret>/payroll-settings.pdf",
    summary="Paramétrage de la paie (DSN), en PDF/A",
    roles=EMPLOYER_OR_STAFF,
)
def payroll_settings_pdf(siret: str) -> Response:
    employer = _employer(siret)
    pdf = render_settings_pdf(employer, payroll_settings(employer))
    _downloaded(employer, SETTINGS_FILE, pdf)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="parametrage-paie-{employer.siret}.pdf"'
    )
    return response


@route(
    "/employers/<siret>/payroll.csv",
    summary="Fichier mensuel des cotisations des agents (CSV)",
    roles=EMPLOYER_OR_STAFF,
    query={"month": MONTH_QUERY},
)
def payroll_file(siret: str) -> Response:
    employer = _employer(siret)
    month = parse_month(request.args.get("month"))
    body = payroll_csv(payroll_month(employer, month))
    _downloaded(employer, PAYROLL_FILE, body.encode("utf-8"), month=month)
    return csv_attachment(body, f"cotisations-{employer.siret}-{month:%Y-%m}.csv")


@route(
    "/employers/<siret>/payroll.json",
    summary="Cotisations des agents du mois, avec leurs totaux",
    roles=EMPLOYER_OR_STAFF,
    query={"month": MONTH_QUERY},
)
def payroll_file_json(siret: str) -> Any:
    employer = _employer(siret)
    return jsonify(payroll_json(payroll_month(employer, parse_month(request.args.get("month")))))


@route(
    "/cdgs/<code>/agents-summary",
    summary="Adhésions des agents par employeur (sans données personnelles)",
    roles=CDG_OR_STAFF,
    query={
        "month": {
            "description": "le mois des montants, AAAA-MM (ce mois-ci par défaut)",
            "schema": MONTH_SCHEMA,
        }
    },
)
def cdg_agents_summary(code: str) -> Any:
    cdg = get_cdg(code, principal=principal())
    raw = request.args.get("month")
    return jsonify(agents_summary(cdg, month=parse_month(raw) if raw is not None else None))


@route(
    "/employers/<siret>/agents/invitations",
    ("POST",),
    summary="Renvoyer l'e-mail de confirmation aux agents qui n'ont pas créé leur compte",
    roles=EMPLOYER_OR_STAFF,
    body=InvitationsIn,
    responses={202: "E-mails mis en file d'envoi", 429: "Trop de renvois : réessayer plus tard"},
)
def resend_agent_invitations(siret: str) -> Any:
    employer = _employer(siret)
    data = parse(InvitationsIn, json_body() if request.get_data() else {})
    limiter().check(
        RESEND_INVITATIONS,
        employer.siret,
        message="Les e-mails de confirmation ont déjà été renvoyés plusieurs fois récemment : "
        "réessayez plus tard.",
    )
    result = resend_invitations(employer, ids=data.ids)
    db.session.commit()
    limiter().hit(RESEND_INVITATIONS, employer.siret)
    return jsonify({"queued": result.queued, "skipped": result.skipped}), 202
