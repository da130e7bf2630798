"""API views: subscription requests (public submission, staff decisions) and prerequisites."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from service import labels
from service.api import json_body, parse, principal, route
from service.downloads import stream_object
from service.reference.domain import get_employer
from service.subscriptions import actions, domain
from service.subscriptions.files import CONTENT_TYPES
from service.subscriptions.models import PREREQUISITE_KINDS, Prerequisite, SubscriptionRequest
from service.subscriptions.schemas import ConfirmIn, DecisionIn
from service.timeutil import iso

STAFF = ("admin", "staff")


def request_json(row: SubscriptionRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "siret": row.siret,
        "name": row.name,
        "data": row.data,
        "contact_name": row.contact_name,
        "contact_email": row.contact_email,
        "created_at": iso(row.created_at),
        "confirmed_at": iso(row.confirmed_at),
        "decided_at": iso(row.decided_at),
        "decided_by": row.decided_by,
        "decision_reason": row.decision_reason,
        "employer_siret": row.siret if row.employer_id else None,
        "version": row.version,
        "files": [
            {
                "field": field,
                "kind": item["kind"],
                "format": item["format"],
                "size": item["size"],
                "sha256": item["sha256"],
                "url": url_for("api.subscription_file", request_id=row.id, field=field),
            }
            for field, item in (row.files or {}).items()
        ],
    }


def prerequisite_json(siret: str, p: Prerequisite) -> dict[str, Any]:
    return {
        "kind": p.kind,
        "received_at": p.received_on.isoformat(),
        "source": p.source,
        "format": p.format,
        "sha256": p.sha256,
        "file_url": url_for("api.prerequisite_file", siret=siret, kind=p.kind),
    }


@route(
    "/cdgs/<code>/subscriptions",
    ("POST",),
    summary="Déposer une demande de souscription (DSC) : multipart data + fichiers",
    roles=None,
    files=("data", *domain.REQUEST_FILES),
    responses={
        202: "Demande reçue : le contact confirme son adresse électronique par le lien reçu",
        404: "CDG inconnu",
        413: "Fichier trop volumineux",
        429: "Trop de demandes",
    },
)
def submit_subscription(code: str) -> Any:
    data = actions.parse_data(actions.form_data())
    row = actions.submit(code, data, actions.read_uploads())
    return jsonify({"id": row.id, "status": row.status}), 202


@route(
    "/subscriptions/confirm",
    ("POST",),
    summary="Confirmer l'adresse du contact d'une demande (lien reçu par courriel)",
    roles=None,
    body=ConfirmIn,
    responses={
        200: "Demande transmise au gestionnaire",
        404: "Lien inconnu",
        409: "Lien déjà utilisé",
        410: "Lien expiré",
    },
)
def confirm_subscription() -> Any:
    data = parse(ConfirmIn, json_body())
    row = domain.confirm_request(token=data.token, address=request.remote_addr)
    return jsonify({"id": row.id, "status": row.status})


@route(
    "/subscriptions",
    summary="Demandes de souscription",
    roles=STAFF,
    query={
        "status": {
            "description": "submitted (défaut), accepted ou refused",
            "schema": {"type": "string", "enum": ["submitted", "accepted", "refused"]},
        }
    },
)
def list_subscriptions() -> Any:
    rows = domain.list_requests(status=request.args.get("status", "submitted"))
    return jsonify({"items": [request_json(r) for r in rows]})


@route("/subscriptions/<int:request_id>", summary="Une demande de souscription", roles=STAFF)
def get_subscription(request_id: int) -> Any:
    return jsonify(request_json(domain.get_request(request_id)))


@route(
    "/subscriptions/<int:request_id>/files/<field>",
    summary="Un fichier d'une demande de souscription",
    roles=STAFF,
    responses={200: "Le fichier"},
)
def subscription_file(request_id: int, field: str) -> Response:
    row = domain.get_request(request_id)
    item = domain.request_file(row, field)
    name = domain.request_file_name(row, field)
    return stream_object(item["key"], CONTENT_TYPES[item["format"]], name, item["size"])


@route(
    "/subscriptions/<int:request_id>/decision",
    ("POST",),
    summary="Accepter ou refuser une demande de souscription",
    roles=STAFF,
    body=DecisionIn,
    responses={200: "Décision enregistrée", 409: "Déjà décidée", 422: "Motif manquant"},
)
def decide_subscription(request_id: int) -> Any:
    data = parse(DecisionIn, json_body())
    row = actions.decide(
        request_id,
        accept=data.accept,
        reason=data.reason,
        principal=principal(),
        version=data.version,
    )
    return jsonify(request_json(row))


@route(
    "/employers/<siret>/prerequisites",
    summary="Pièces préalables d'un employeur",
    roles=("admin", "staff", "cdg"),
)
def list_prerequisites(siret: str) -> Any:
    employer = get_employer(siret, principal=principal())
    status = domain.prerequisites_of(employer)
    return jsonify(
        {
            "complete": status.complete,
            "missing": list(status.missing),
            "missing_labels": [labels.prerequisite(k) for k in status.missing],
            "items": [prerequisite_json(employer.siret, p) for p in status.items],
        }
    )


_KIND = {"description": "pièce", "schema": {"type": "string", "enum": list(PREREQUISITE_KINDS)}}


@route(
    "/employers/<siret>/prerequisites/<kind>",
    ("POST",),
    summary="Enregistrer une pièce préalable reçue par courrier (multipart, champ file)",
    roles=STAFF,
    files=("file",),
    query={
        "received_on": {
            "description": "date de réception (AAAA-MM-JJ)",
            "schema": {"type": "string", "format": "date"},
        }
    },
    responses={201: "Pièce enregistrée", 413: "Trop volumineux", 422: "Fichier refusé (code)"},
)
def upload_prerequisite(siret: str, kind: str) -> Any:
    employer = get_employer(siret)
    domain.check_kind(kind)
    received = actions.parse_received_on(
        request.form.get("received_on") or request.args.get("received_on")
    )
    row = actions.receive(employer, kind, received_on=received, principal=principal())
    return jsonify(prerequisite_json(employer.siret, row)), 201


@route(
    "/employers/<siret>/prerequisites/<kind>/file",
    summary="Le fichier d'une pièce préalable",
    roles=("admin", "staff", "cdg"),
    responses={200: "Le fichier"},
)
def prerequisite_file(siret: str, kind: str) -> Response:
    employer = get_employer(siret, principal=principal())
    row = domain.get_prerequisite(employer, kind)
    name = domain.prerequisite_file_name(employer, row)
    return stream_object(row.storage_key, CONTENT_TYPES[row.format], name, row.size)
