"""API views of the agents' space: activation, sign-in, the agent's memberships, certificate
and beneficiary designation (thin views over `service.agents.space`)."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify, request

from service.agents import certificate, space
from service.agents.space_schemas import ActivateIn, AgentSessionIn, DesignationIn, beneficiaries
from service.api import json_body, parse, principal, route
from service.backends import settings
from service.errors import InvalidInput
from service.extensions import db
from service.schema_types import DATABASE_ID
from service.timeutil import iso

AGENT = ("agent",)
MEMBERSHIP_QUERY = {
    "membership": {
        "description": "l'adhésion visée, quand l'agent en a plusieurs",
        "schema": DATABASE_ID,
    }
}
_ID = re.compile(r"[1-9][0-9]{0,9}")


def membership_param() -> int | None:
    raw = request.args.get("membership")
    if raw is None or raw == "":
        return None
    if _ID.fullmatch(raw) is None or int(raw) > DATABASE_ID["maximum"]:
        raise InvalidInput(
            "Adhésion invalide : « membership » est un identifiant numérique.",
            code="invalid_membership",
            field="membership",
        )
    return int(raw)


@route(
    "/agents/activate",
    ("POST",),
    summary="Activer le compte d'un agent (lien reçu par courriel)",
    roles=None,
    body=ActivateIn,
    responses={
        200: "Adhésion rattachée au compte existant",
        201: "Compte créé",
        401: "Mot de passe du compte existant incorrect",
        409: "Lien déjà utilisé",
        410: "Lien expiré",
        429: "Trop d'essais",
    },
)
def agent_activate() -> Any:
    data = parse(ActivateIn, json_body())
    done = space.activate(token=data.token, password=data.password, address=request.remote_addr)
    db.session.commit()
    body = {
        "email": done.account.email,
        "created": done.created,
        "membership": space.membership_summary(done.membership),
    }
    return jsonify(body), 201 if done.created else 200


@route(
    "/agents/session",
    ("POST",),
    summary="Ouvrir une session d'agent (adresse + mot de passe)",
    roles=None,
    body=AgentSessionIn,
    responses={
        200: "Jeton d'agent",
        401: "Adresse ou mot de passe incorrect",
        429: "Trop d'essais",
    },
)
def agent_session() -> Any:
    data = parse(AgentSessionIn, json_body())
    token, expires = space.open_agent_session(
        email=data.email, password=data.password, address=request.remote_addr
    )
    db.session.commit()
    return jsonify({"token": token, "expires_at": iso(expires)})


@route(
    "/agents/session",
    ("DELETE",),
    summary="Fermer la session d'agent (le jeton ne sert plus)",
    roles=AGENT,
    responses={204: "Session fermée"},
)
def agent_session_close() -> Any:
    token = request.headers.get("Authorization", "")[7:].strip()
    space.close_agent_session(principal=principal(), token=token)
    db.session.commit()
    return "", 204


@route(
    "/agents/me", summary="Les adhésions de l'agent et le détail de leur cotisation", roles=AGENT
)
def agent_me() -> Any:
    who = principal()
    return jsonify(
        {
            "email": who.email,
            "memberships": [space.membership_summary(m) for m in space.agent_memberships(who)],
        }
    )


@route(
    "/agents/me/certificate.pdf",
    summary="Le certificat d'adhésion (PDF/A)",
    roles=AGENT,
    query=MEMBERSHIP_QUERY,
)
def agent_certificate() -> Response:
    membership = space.agent_membership(principal(), membership_param())
    return certificate_response(membership)


def certificate_response(membership: Any) -> Response:
    pdf = certificate.membership_certificate(membership, zone=settings().timezone)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{certificate.file_name(membership)}"'
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


@route(
    "/agents/me/beneficiaries",
    summary="La désignation de bénéficiaires en vigueur et son historique",
    roles=AGENT,
    query=MEMBERSHIP_QUERY,
)
def agent_beneficiaries() -> Any:
    membership = space.agent_membership(principal(), membership_param())
    return jsonify(space.beneficiaries_summary(membership))


@route(
    "/agents/me/beneficiaries",
    ("PUT",),
    summary="Désigner ses bénéficiaires (clause type ou bénéficiaires nommés)",
    roles=AGENT,
    body=DesignationIn,
    query=MEMBERSHIP_QUERY,
    responses={200: "Désignation enregistrée", 409: "Pas d'option décès"},
)
def agent_designate() -> Any:
    data = parse(DesignationIn, json_body())
    membership_id = membership_param()
    designation = space.designate_beneficiaries(
        principal=principal(),
        membership_id=membership_id,
        clause=data.clause,
        beneficiaries=beneficiaries(data),
        address=request.remote_addr,
    )
    db.session.commit()
    return jsonify(space.beneficiaries_summary(designation.membership))
