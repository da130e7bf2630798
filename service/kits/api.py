"""API views for kits and their documents."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

from flask import Response, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field

from service import labels
from service.api import json_body, parse, principal, route
from service.backends import document_store, settings
from service.downloads import bytes_attachment, record_kit_download, stream_object
from service.extensions import db
from service.formatting import group_code
from service.kits import domain
from service.kits.actions import cancel_one, issue_one
from service.kits.lifecycle import CANCELLED
from service.kits.models import Kit
from service.kits.proof import Audience, make_proof
from service.reference.domain import get_employer
from service.timeutil import iso

READERS = ("admin", "staff", "cdg", "employer")


class KitIssueIn(BaseModel):
    """Optional body of an issue: a chosen start of cover, and why when it is before today;
    why the kit goes out while prerequisites are missing (a separate reason)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    cover_starts_on: date | None = None
    override_reason: str | None = Field(default=None, min_length=3, max_length=500)
    prerequisites_override_reason: str | None = Field(default=None, min_length=3, max_length=500)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=domain.CANCEL_REASON_MAX)


def _returns(kit: Kit) -> list[dict[str, Any]]:
    db.session.expire(kit, ["returns"])  # read them now, as a query would
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "status": r.status,
            "code": r.refusal_code,
            "uploaded_at": iso(r.uploaded_at),
            "countersigned": r.countersigned_key is not None,
            "signed_url": url_for("api.signed_pdf", kit_id=kit.id, kind=r.kind)
            if r.status == "accepted"
            else None,
        }
        for r in kit.returns
    ]


def kit_json(kit: Kit, *, access_code: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": kit.id,
        "reference": kit.reference,
        "status": kit.status,
        "siret": kit.employer.siret,
        "employer": kit.employer.name,
        "cdg": kit.employer.cdg.code,
        "convention_id": kit.convention_id,
        "issued_at": iso(kit.issued_at),
        "cover_starts_on": kit.cover_starts_on.isoformat() if kit.cover_starts_on else None,
        "status_changed_at": iso(kit.status_changed_at),
        "access_code_expires_at": iso(kit.access_code_expires_at),
        "documents": [
            {
                "kind": d.kind,
                "title": d.title,
                "sha256": d.sha256,
                "size": d.size,
                "pages": d.pages,
                "requires_signature": d.requires_signature,
                "pdf_url": url_for("api.document_pdf", kit_id=kit.id, kind=d.kind),
                "docx_url": url_for("api.document_docx", kit_id=kit.id, kind=d.kind)
                if d.docx_key
                else None,
            }
            for d in kit.documents
        ],
        "returns": _returns(kit),
        "bundle_url": url_for("api.kit_bundle", kit_id=kit.id),
        "zip_url": url_for("api.kit_zip", kit_id=kit.id),
        "proof_url": url_for("api.kit_proof", kit_id=kit.id),
    }
    if kit.status == CANCELLED:
        data["cancelled_at"] = iso(kit.cancelled_at)
        data["cancel_reason"] = kit.cancel_reason
    if access_code is not None:
        data["access_code"] = group_code(access_code)
    return data


@route(
    "/employers/<siret>/kits",
    ("POST",),
    summary="Émettre le kit d'un employeur",
    roles=("admin", "staff"),
    body=KitIssueIn,
    responses={
        201: "Kit émis (le code d'accès n'apparaît qu'ici)",
        409: "Pièces préalables manquantes (prerequisites_missing, avec la liste)",
        422: "Début de garantie refusé (premier du mois, délibération, convention, passé)",
    },
)
def issue(siret: str) -> Any:
    who = principal()
    # no body: the defaults; a body: a JSON object, or 422 (never issued on a broken body)
    body = parse(KitIssueIn, json_body()) if request.get_data(cache=True) else KitIssueIn()
    employer = get_employer(siret)
    issued = issue_one(
        employer,
        actor=who.actor,
        cover_starts_on=body.cover_starts_on,
        override_reason=body.override_reason,
        prerequisites_override_reason=body.prerequisites_override_reason,
    )
    kit = issued.kit
    return jsonify(kit_json(kit, access_code=issued.access_code)), 201


@route("/kits/<int:kit_id>", summary="Un kit, ses documents et son état", roles=READERS)
def get_kit(kit_id: int) -> Any:
    return jsonify(kit_json(domain.get_kit(kit_id, principal=principal())))


def _downloaded(kit: Kit, what: str, sha256: str | None = None) -> None:
    record_kit_download(kit, file=what, actor=principal().actor, sha256=sha256)


@route("/kits/<int:kit_id>/documents/<kind>.pdf", summary="Un document du kit (PDF)", roles=READERS)
def document_pdf(kit_id: int, kind: str) -> Response:
    kit = domain.get_kit(kit_id, principal=principal())
    doc = domain.get_document(kit, kind)
    _downloaded(kit, f"{kind}.pdf", doc.sha256)
    return stream_object(
        doc.pdf_key, "application/pdf", labels.download_name(kit.reference, kind), doc.size
    )


@route(
    "/kits/<int:kit_id>/documents/<kind>.docx",
    summary="Une pièce contractuelle en DOCX (modifiable)",
    roles=READERS,
)
def document_docx(kit_id: int, kind: str) -> Response:
    kit = domain.get_kit(kit_id, principal=principal())
    key = domain.require_docx(domain.get_document(kit, kind))
    _downloaded(kit, f"{kind}.docx")
    return stream_object(
        key,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        labels.download_name(kit.reference, kind, ext="docx"),
    )


@route(
    "/kits/<int:kit_id>/bundle.pdf", summary="Tous les documents en un PDF (signets)", roles=READERS
)
def kit_bundle(kit_id: int) -> Response:
    kit = domain.get_kit(kit_id, principal=principal())
    _downloaded(kit, "bundle.pdf", kit.bundle_sha256)
    return stream_object(kit.bundle_key, "application/pdf", f"{kit.reference}.pdf")


@route("/kits/<int:kit_id>/kit.zip", summary="Tout le kit en ZIP", roles=READERS)
def kit_zip(kit_id: int) -> Response:
    kit = domain.get_kit(kit_id, principal=principal())
    archive, sha256 = domain.zip_of(kit, store=document_store())  # made (and checked) first
    _downloaded(kit, "kit.zip", sha256)
    return bytes_attachment(archive, "application/zip", f"{kit.reference}.zip")


def proof_response(kit: Kit, *, role: str | None = None) -> Response:
    """The kit's proof certificate as it stands now, as an attachment (API and pages); the
    employer's copy (`role="employer"`) names no staff member and no stranger's address."""
    audience: Audience = "employer" if role == "employer" else "cdg" if role == "cdg" else "staff"
    pdf = make_proof(kit, documents=document_store(), zone=settings().timezone, audience=audience)
    response = Response(pdf, mimetype="application/pdf")
    name = f"{kit.reference}-certificat-de-preuve.pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@route(
    "/kits/<int:kit_id>/proof.pdf",
    summary="Le certificat de preuve du kit (PDF/A, heure de Paris)",
    roles=READERS,
)
def kit_proof(kit_id: int) -> Response:
    kit = domain.get_kit(kit_id, principal=principal())
    response = proof_response(kit, role=principal().role)
    _downloaded(kit, "proof.pdf", hashlib.sha256(response.get_data()).hexdigest())
    return response


@route(
    "/kits/<int:kit_id>/cancel",
    ("POST",),
    summary="Annuler un kit ouvert (son code d'accès cesse de fonctionner)",
    roles=("admin", "staff"),
    body=CancelIn,
    responses={200: "Kit annulé", 409: "Le kit n'est plus ouvert"},
)
def cancel(kit_id: int) -> Any:
    data = parse(CancelIn, json_body())
    kit = cancel_one(kit_id, reason=data.reason, principal=principal())
    return jsonify(kit_json(kit))
