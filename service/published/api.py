"""API views of the CDG's published documents: anyone, no token (issue 12)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for

from service.api import route
from service.backends import document_store
from service.downloads import stream_object
from service.published.domain import Publication, PublishedEntry, publication


def entry_json(entry: PublishedEntry, code: str) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "title": entry.title,
        "url": url_for("api.published_document", code=code, kind=entry.kind),
        "format": entry.format,
        "media_type": entry.media_type,
        "size": entry.size,
        "sha256": entry.sha256,
    }


def publication_headers(pub: Publication) -> dict[str, str]:
    return {"ETag": f'"{pub.fingerprint}"', "X-Convention-Reference": pub.convention.reference}


@route(
    "/cdgs/<code>/documents",
    summary="Les documents publiés par un CDG (demande de souscription, BAI, notice, modèles)",
    roles=None,
    responses={200: "Liste des documents", 404: "CDG inconnu ou sans convention en vigueur"},
)
def published_documents(code: str) -> Any:
    pub = publication(code, store=document_store())
    response = jsonify([entry_json(entry, code) for entry in pub.entries])
    response.headers.update(publication_headers(pub))
    return response


@route(
    "/cdgs/<code>/documents/<kind>",
    summary="Télécharger un document publié par un CDG",
    roles=None,
    responses={200: "Le document", 404: "CDG ou document inconnu"},
)
def published_document(code: str, kind: str) -> Any:
    pub = publication(code, store=document_store())
    entry = pub.entry(kind)
    response = stream_object(
        entry.key,
        entry.media_type,
        entry.filename(pub.convention.reference),
        entry.size,
    )
    response.headers.update(publication_headers(pub))
    return response
