"""API views: the collectivité's signatory, one-time codes, the signature in the browser."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictBool

from service.api import json_body, parse, principal, route
from service.esign import actions, domain
from service.esign.models import Signatory, SigningRequest
from service.kits.domain import get_kit
from service.returns.api import return_json
from service.schema_types import TRIMMED
from service.timeutil import iso
from signing.errors import Refused

EMPLOYER = ("employer",)


class SignatoryIn(BaseModel):
    """Who signs for the collectivité (the pages' form and the API)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=2, max_length=120, pattern=TRIMMED)
    title: str = Field(min_length=2, max_length=80, pattern=TRIMMED)
    email: EmailStr


class SignatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    typed: str | None = Field(default=None, max_length=80)
    drawn: str | None = Field(default=None, max_length=420_000)


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=20)
    consent: StrictBool
    signature: SignatureIn


def signatory_json(s: Signatory) -> dict[str, Any]:
    return {"name": s.name, "title": s.title, "email": s.email, "named_at": iso(s.named_at)}


def request_json(req: SigningRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "kind": req.kind,
        "status": req.status,
        "sent_to": req.signatory_email,
        "expires_at": iso(req.expires_at),
        "document_sha256": req.document_sha256,
    }


@route(
    "/kits/<int:kit_id>/signatory",
    ("PUT",),
    summary="Désigner le signataire de la collectivité",
    roles=EMPLOYER,
    body=SignatoryIn,
    responses={200: "Signataire enregistré", 404: "Kit inconnu", 422: "Saisie invalide"},
)
def put_signatory(kit_id: int) -> Any:
    who = principal()
    kit = get_kit(kit_id, principal=who)
    data = parse(SignatoryIn, json_body())
    signatory = domain.name_signatory(
        kit,
        name=data.name,
        title=data.title,
        email=str(data.email),
        principal=who,
        address=request.remote_addr,
    )
    return jsonify(signatory_json(signatory))


@route(
    "/kits/<int:kit_id>/documents/<kind>/signing",
    ("POST",),
    summary="Envoyer un code de signature au signataire",
    roles=EMPLOYER,
    responses={
        202: "Code envoyé par courriel",
        404: "Kit inconnu",
        409: "Signataire manquant ou pièce non signable",
        429: "Trop de codes demandés",
    },
)
def start_signing(kit_id: int, kind: str) -> Any:
    who = principal()
    kit = get_kit(kit_id, principal=who)
    req = actions.send_code(kit, kind, principal=who, address=request.remote_addr)
    return jsonify(request_json(req)), 202


@route(
    "/kits/<int:kit_id>/documents/<kind>/signing/confirm",
    ("POST",),
    summary="Signer la pièce avec le code reçu",
    roles=EMPLOYER,
    body=ConfirmIn,
    responses={
        201: "Pièce signée et acceptée",
        404: "Kit inconnu",
        409: "Code déjà utilisé ou pièce non signable",
        422: "Consentement, signature ou code invalide",
        429: "Trop d'essais",
    },
)
def confirm_signing(kit_id: int, kind: str) -> Any:
    who = principal()
    kit = get_kit(kit_id, principal=who)
    data = parse(ConfirmIn, json_body())
    try:
        ret = actions.sign(
            kit,
            kind,
            code=data.code,
            consent=data.consent,
            signature=domain.SignatureGiven(typed=data.signature.typed, drawn=data.signature.drawn),
            principal=who,
            address=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
        )
    except Refused as refusal:
        raise domain.refusal_as_error(refusal) from None
    return jsonify(return_json(ret)), 201
