"""API views: portal sessions, signed returns, review, countersignature, audit trail."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from service import labels
from service.api import json_body, parse, principal, route
from service.audit.domain import kit_events
from service.downloads import record_kit_download, stream_object
from service.errors import Forbidden, InvalidInput
from service.extensions import db
from service.kits.api import kit_json
from service.kits.domain import get_kit
from service.reference.domain import get_employer
from service.returns import domain
from service.returns.actions import countersign_and_archive, receive_upload
from service.returns.models import KitReturn
from service.timeutil import iso
from signing.errors import Refused

STAFF = ("admin", "staff")


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    siret: str = Field(max_length=40)
    access_code: str = Field(max_length=60)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept: bool
    reason: str | None = Field(default=None, max_length=1000)
    version: int | None = None


def return_json(ret: KitReturn) -> dict[str, Any]:
    return {
        "id": ret.id,
        "kit_id": ret.kit_id,
        "kit_reference": ret.kit.reference,
        "siret": ret.kit.employer.siret,
        "employer": ret.kit.employer.name,
        "kind": ret.kind,
        "status": ret.status,
        "code": ret.refusal_code,
        "message": ret.refusal_message,
        "sha256": ret.sha256,
        "size": ret.size,
        "signatures": ret.verification.get("signers", []),
        "reasons": ret.verification.get("reasons", []),
        "differences": ret.verification.get("differences", []),
        "pdfa_preserved": ret.verification.get("pdfa_preserved"),
        "pdfa_reason": ret.verification.get("pdfa_reason"),
        "uploaded_by": ret.uploaded_by,
        "uploaded_at": iso(ret.uploaded_at),
        "decided_by": ret.decided_by,
        "decided_at": iso(ret.decided_at),
        "decision_reason": ret.decision_reason,
        "countersigned": ret.countersigned_key is not None,
        "version": ret.version,
    }


def _address() -> str | None:
    return request.remote_addr


@route(
    "/portal/session",
    ("POST",),
    summary="Ouvrir une session employeur (SIRET + code)",
    roles=None,
    body=SessionIn,
    responses={200: "Jeton employeur", 401: "Couple invalide", 429: "Trop d'essais"},
)
def portal_session() -> Any:
    data = parse(SessionIn, json_body())
    session = domain.open_portal_session(
        siret=data.siret, access_code=data.access_code, address=_address()
    )
    return jsonify(
        {"token": session.token, "expires_at": iso(session.expires_at), "kit_id": session.kit_id}
    )


@route(
    "/employers/<siret>/unlock", ("POST",), summary="Lever le verrouillage du portail", roles=STAFF
)
def unlock(siret: str) -> Any:
    get_employer(siret)
    domain.unlock_portal(siret, principal=principal())
    db.session.commit()
    return jsonify({"siret": siret, "locked": False})


@route(
    "/kits/<int:kit_id>/documents/<kind>/returns",
    ("POST",),
    summary="Déposer une pièce signée (multipart, champ file)",
    roles=("admin", "staff", "employer"),
    files=("file",),
    responses={
        201: "Retour accepté ou à revoir",
        413: "Trop volumineux",
        422: "Retour refusé (code)",
    },
)
def upload_return(kit_id: int, kind: str) -> Any:
    who = principal()
    kit = get_kit(kit_id, principal=who)
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput(
            "Joignez le fichier signé (champ « file »).", code="file_missing", field="file"
        )
    try:
        ret = receive_upload(kit, kind, upload.stream, principal=who, address=_address())
    except Refused as refusal:
        raise InvalidInput(refusal.message, code=refusal.code, field="file") from None
    return jsonify(return_json(ret)), 201


@route(
    "/returns",
    summary="File de revue des retours signés",
    roles=STAFF,
    query={
        "status": {
            "description": "pending_review (défaut), accepted ou refused",
            "schema": {"type": "string", "enum": ["pending_review", "accepted", "refused"]},
        }
    },
)
def list_returns() -> Any:
    items = domain.review_queue(status=request.args.get("status", "pending_review"))
    return jsonify({"items": [return_json(r) for r in items]})


@route("/returns/<int:return_id>", summary="Un retour signé et sa vérification", roles=STAFF)
def get_return(return_id: int) -> Any:
    return jsonify(return_json(domain.get_return(return_id)))


@route(
    "/returns/<int:return_id>/decision",
    ("POST",),
    summary="Accepter ou refuser un retour",
    roles=STAFF,
    body=DecisionIn,
    responses={200: "Décision enregistrée", 409: "Déjà traité"},
)
def decision(return_id: int) -> Any:
    data = parse(DecisionIn, json_body())
    ret = domain.decide(
        return_id,
        accept=data.accept,
        reason=data.reason,
        principal=principal(),
        version=data.version,
    )
    return jsonify(return_json(ret))


@route(
    "/kits/<int:kit_id>/countersign",
    ("POST",),
    summary="Contresigner les pièces acceptées",
    roles=STAFF,
    responses={200: "Kit contresigné", 409: "Signature employeur manquante"},
)
def countersign(kit_id: int) -> Any:
    who = principal()
    get_kit(kit_id, principal=who)
    kit = countersign_and_archive(kit_id, principal=who)
    return jsonify(kit_json(kit))


@route(
    "/kits/<int:kit_id>/documents/<kind>/signed.pdf",
    summary="La pièce signée acceptée (contresignée quand elle l'est)",
    roles=("admin", "staff", "cdg", "employer"),
)
def signed_pdf(kit_id: int, kind: str) -> Any:
    kit = get_kit(kit_id, principal=principal())
    ret = domain.accepted_return(kit, kind)
    key = ret.countersigned_key or ret.storage_key
    record_kit_download(
        kit,
        file=f"{kind}/signed.pdf",
        actor=principal().actor,
        sha256=ret.countersigned_sha256 or ret.sha256,
    )
    copy = "countersigned" if ret.countersigned_key else "signed"
    return stream_object(
        key, "application/pdf", labels.download_name(kit.reference, kind, copy=copy)
    )


@route(
    "/kits/<int:kit_id>/events",
    summary="Journal d'audit du kit (chaîné)",
    roles=("admin", "staff", "cdg"),
)
def events(kit_id: int) -> Any:
    who = principal()
    if who.role == "employer":
        raise Forbidden()
    kit = get_kit(kit_id, principal=who)
    return jsonify(
        {
            "items": [
                {
                    "id": e.id,
                    "event": e.event,
                    "actor": e.actor,
                    "address": e.address,
                    "at": iso(e.at),
                    "sha256_before": e.sha256_before,
                    "sha256_after": e.sha256_after,
                    "details": e.details,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in kit_events(kit.id)
            ]
        }
    )
