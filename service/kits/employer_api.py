"""API views for employers (collectivités): their reference data with their current kit.

Here, above both, because an employer is shown with its kit: the reference data know nothing of
the kits.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from service.api import json_body, parse, principal, query_int, route
from service.extensions import db
from service.kits.domain import current_kit
from service.kits.lifecycle import CURRENT_STATES
from service.kits.listing import list_employers as listing
from service.reference import domain
from service.reference.models import Employer
from service.reference.schemas import EmployerIn, EmployerPatch
from service.timeutil import iso

STAFF = ("admin", "staff")


def employer_json(e: Employer) -> dict[str, Any]:
    kit = current_kit(e)
    return {
        "siret": e.siret,
        "name": e.name,
        "kind": e.kind,
        "address": e.address,
        "email": e.email,
        "cdg": e.cdg.code,
        "convention_id": e.convention_id,
        "headcount": e.headcount,
        "cst_opinion_on": e.cst_opinion_on.isoformat(),
        "deliberation_on": e.deliberation_on.isoformat(),
        "joins_on": e.joins_on.isoformat(),
        "contribution": e.contribution,
        "signatory_gender": e.signatory_gender,
        "kit": None
        if kit is None
        else {
            "id": kit.id,
            "reference": kit.reference,
            "status": kit.status,
            "issued_at": iso(kit.issued_at),
            "status_changed_at": iso(kit.status_changed_at),
        },
        "kit_status": kit.status if kit else "none",
    }


# -- Employers ---------------------------------------------------------------------------------


@route(
    "/employers",
    ("POST",),
    summary="Créer un employeur (collectivité)",
    roles=STAFF,
    body=EmployerIn,
    responses={201: "Employeur créé", 409: "SIRET déjà enregistré"},
)
def create_employer() -> Any:
    data = parse(EmployerIn, json_body())
    employer = domain.create_employer(**data.model_dump())
    db.session.commit()
    return jsonify(employer_json(employer)), 201


@route(
    "/employers",
    summary="Lister les employeurs",
    roles=("admin", "staff", "cdg"),
    query={
        "cdg": "code du CDG",
        "status": {
            "description": "état du kit (none : pas de kit)",
            "schema": {
                "type": "string",
                "enum": ["none", *CURRENT_STATES],
            },
        },
        "kind": "type de collectivité",
        "q": "recherche sur le nom ou le SIRET",
        "limit": "taille de page (200 au plus)",
        "offset": "décalage",
    },
)
def list_employers() -> Any:
    who = principal()
    cdg = request.args.get("cdg")
    if who.role == "cdg":
        cdg = who.cdg_code
    limit = min(query_int("limit", 100), 200)
    offset = query_int("offset", 0)
    total, employers = listing(
        cdg=cdg,
        status=request.args.get("status"),
        q=request.args.get("q"),
        kind=request.args.get("kind"),
        limit=limit,
        offset=offset,
    )
    return jsonify(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [employer_json(e) for e in employers],
        }
    )


@route(
    "/employers/<siret>",
    summary="Un employeur et l'état de son kit",
    roles=("admin", "staff", "cdg", "employer"),
)
def get_employer(siret: str) -> Any:
    return jsonify(employer_json(domain.get_employer(siret, principal=principal())))


@route(
    "/employers/<siret>",
    ("PATCH",),
    summary="Modifier un employeur",
    roles=STAFF,
    body=EmployerPatch,
)
def patch_employer(siret: str) -> Any:
    data = parse(EmployerPatch, json_body())
    employer = domain.update_employer(
        domain.get_employer(siret), **data.model_dump(exclude_unset=True)
    )
    db.session.commit()
    return jsonify(employer_json(employer))
