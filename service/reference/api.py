"""API views for CDGs, conventions and the premium simulator (the employers, shown with their
kit, are in `service.kits.employer_api`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import jsonify, request

from service.api import json_body, parse, principal, route
from service.errors import Forbidden, InvalidInput
from service.extensions import db
from service.reference import domain
from service.reference.models import Cdg, Convention
from service.reference.schemas import (
    CdgIn,
    CdgPatch,
    ConventionIn,
    ConventionPatch,
)
from service.reference.simulation import EXCLUDED, INCLUDED, simulate
from service.schema_types import AMOUNT

STAFF = ("admin", "staff")
SIGNED_IN = ("admin", "staff", "cdg", "employer")


def cdg_json(cdg: Cdg) -> dict[str, Any]:
    return {"code": cdg.code, "name": cdg.name, "email": cdg.email}


def convention_json(c: Convention) -> dict[str, Any]:
    return {
        "id": c.id,
        "cdg": c.cdg.code,
        "reference": c.reference,
        "insurer": c.insurer,
        "manager": c.manager,
        "starts_on": c.starts_on.isoformat(),
        "ends_on": c.ends_on.isoformat(),
        "base_rate": f"{Decimal(c.base_rate):.2f}",
        "cdg_fee_rate": f"{Decimal(c.cdg_fee_rate):.2f}",
        "options": c.options,
        "template_set": c.template_set,
        "insurer_legal_form": c.insurer_legal_form,
        "insurer_capital": None
        if c.insurer_capital is None
        else f"{Decimal(c.insurer_capital):.2f}",
        "insurer_register": c.insurer_register,
        "insurer_address": c.insurer_address,
        "regime": c.regime,
    }


# -- CDG ---------------------------------------------------------------------------------------


@route(
    "/cdgs",
    ("POST",),
    summary="Créer un CDG",
    roles=STAFF,
    body=CdgIn,
    responses={201: "CDG créé", 409: "Code déjà utilisé"},
)
def create_cdg() -> Any:
    data = parse(CdgIn, json_body())
    cdg = domain.create_cdg(**data.model_dump())
    db.session.commit()
    return jsonify(cdg_json(cdg)), 201


@route("/cdgs", summary="Lister les CDG", roles=STAFF)
def list_cdgs() -> Any:
    return jsonify({"items": [cdg_json(c) for c in domain.list_cdgs()]})


@route("/cdgs/<code>", summary="Un CDG", roles=("admin", "staff", "cdg"))
def get_cdg(code: str) -> Any:
    return jsonify(cdg_json(domain.get_cdg(code, principal=principal())))


@route("/cdgs/<code>", ("PATCH",), summary="Modifier un CDG", roles=STAFF, body=CdgPatch)
def patch_cdg(code: str) -> Any:
    data = parse(CdgPatch, json_body())
    cdg = domain.update_cdg(domain.get_cdg(code), **data.model_dump(exclude_unset=True))
    db.session.commit()
    return jsonify(cdg_json(cdg))


# -- Conventions -------------------------------------------------------------------------------


@route(
    "/conventions",
    ("POST",),
    summary="Créer une convention de participation",
    roles=STAFF,
    body=ConventionIn,
    responses={201: "Convention créée", 409: "Référence déjà utilisée"},
)
def create_convention() -> Any:
    data = parse(ConventionIn, json_body())
    convention = domain.create_convention(**data.model_dump())
    db.session.commit()
    return jsonify(convention_json(convention)), 201


@route("/conventions", summary="Lister les conventions", roles=STAFF, query={"cdg": "code du CDG"})
def list_conventions() -> Any:
    items = domain.list_conventions(cdg=request.args.get("cdg"))
    return jsonify({"items": [convention_json(c) for c in items]})


@route("/conventions/<int:convention_id>", summary="Une convention", roles=STAFF)
def get_convention(convention_id: int) -> Any:
    return jsonify(convention_json(domain.get_convention(convention_id)))


@route(
    "/conventions/<int:convention_id>",
    ("PATCH",),
    summary="Modifier une convention",
    roles=STAFF,
    body=ConventionPatch,
)
def patch_convention(convention_id: int) -> Any:
    data = parse(ConventionPatch, json_body())
    convention = domain.update_convention(
        domain.get_convention(convention_id), **data.model_dump(exclude_unset=True)
    )
    db.session.commit()
    return jsonify(convention_json(convention))


_OPTION_CODES = {
    "type": "string",
    "pattern": r"^[a-z][a-z0-9_]{1,30}(?:,[a-z][a-z0-9_]{1,30}){0,5}$",
}
_EUROS = {"schema": {"type": "string", "pattern": r"^[0-9]{1,6}(?:[.,][0-9]{1,2})?$"}}


@route(
    "/conventions/<int:convention_id>/simulation",
    summary="Simuler la cotisation d'un agent",
    roles=SIGNED_IN,
    query={
        "gross": {"description": "rémunération brute mensuelle servant d'assiette", **_EUROS},
        **{k: {"description": v, **_EUROS} for k, v in INCLUDED.items()},
        **{k: {"description": f"{v} (acceptée, ignorée)", **_EUROS} for k, v in EXCLUDED.items()},
        "contribution": {
            "description": "participation mensuelle de l'employeur, en euros",
            "schema": AMOUNT,
        },
        "options": {
            "description": "codes d'options séparés par des virgules",
            "schema": _OPTION_CODES,
        },
    },
)
def simulation(convention_id: int) -> Any:
    who = principal()
    convention = domain.get_convention(convention_id, principal=who if who.role == "cdg" else None)
    if who.role == "employer":
        employer = domain.get_employer(who.siret or "", principal=who)
        if employer.convention_id != convention.id:
            raise Forbidden("Cette convention n'est pas la vôtre.")
    codes = [c.strip() for c in request.args.get("options", "").split(",") if c.strip()]
    if len(request.args) > 20:
        raise InvalidInput("Trop de paramètres.", code="invalid_input")
    result = simulate(
        base_rate=Decimal(convention.base_rate),
        available_options=domain.convention_options(convention),
        elements=request.args,
        contribution=request.args.get("contribution"),
        option_codes=codes,
        regime=convention.regime,
    )
    return jsonify(
        {
            "convention_id": convention.id,
            "base": f"{result.base:.2f}",
            "rate": f"{result.rate:.2f}",
            "premium": f"{result.premium:.2f}",
            "contribution": f"{result.contribution:.2f}",
            "contribution_paid": f"{result.contribution_paid:.2f}",
            "employee_share": f"{result.employee_share:.2f}",
            "options": [
                {"code": o.code, "label": o.label, "rate": f"{o.rate:.2f}"} for o in result.options
            ],
            "notes": list(result.notes),
        }
    )
