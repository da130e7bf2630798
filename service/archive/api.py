"""API views of the CDG archive and the tracking export."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, redirect, request

from service.api import principal, query_int, route
from service.archive import domain
from service.archive.downloads import archived_copy, record_archive_download
from service.archive.models import ArchiveRecord
from service.backends import archive_store
from service.downloads import csv_attachment
from service.errors import NotFound
from service.schema_types import CDG_CODE
from service.timeutil import iso

READERS = ("admin", "staff", "cdg")


def record_json(rec: ArchiveRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "cdg": rec.cdg_code,
        "siret": rec.siret,
        "kit_reference": rec.kit_reference,
        "kind": rec.kind,
        "sha256": rec.sha256,
        "size": rec.size,
        "signers": rec.signers,
        "retain_until": iso(rec.retain_until),
        "archived_at": iso(rec.archived_at),
        "content_url": f"/api/v1/archive/{rec.id}/content",
    }


@route(
    "/archive",
    summary="Copies archivées (pagination par curseur)",
    roles=READERS,
    query={
        "cdg": {
            "description": "code du CDG (celui du compte pour un CDG)",
            "required": True,
            "schema": CDG_CODE,
        },
        "siret": "un employeur",
        "limit": "200 au plus",
        "after": "curseur : l'identifiant « next » de la page précédente",
    },
)
def list_archive() -> Any:
    limit = min(query_int("limit", 100), 200)
    after = query_int("after", 0) if request.args.get("after") else None
    rows, next_after = domain.list_archive(
        principal=principal(),
        cdg=request.args.get("cdg"),
        siret=request.args.get("siret"),
        limit=limit,
        after=after,
    )
    return jsonify({"items": [record_json(r) for r in rows], "next": next_after})


@route("/archive/<int:record_id>", summary="Une copie archivée", roles=READERS)
def get_archive(record_id: int) -> Any:
    return jsonify(record_json(domain.get_record(record_id, principal=principal())))


@route(
    "/archive/<int:record_id>/content",
    summary="Le fichier archivé (flux, ou redirection vers une URL signée de 5 minutes)",
    roles=READERS,
    responses={200: "Fichier", 302: "URL présignée"},
)
def archive_content(record_id: int) -> Response:
    rec = domain.get_record(record_id, principal=principal())
    record_archive_download(rec, actor=principal().actor)
    store = archive_store()
    url = store.presign(rec.key, expires_in=300)
    if url:
        response = redirect(url, code=302)
        response.headers["Cache-Control"] = "no-store"
        return response
    return archived_copy(rec)


@route(
    "/cdgs/<code>/tracking.csv",
    summary="Suivi des employeurs du CDG (CSV, « ; », UTF-8)",
    roles=READERS,
)
def tracking(code: str) -> Response:
    who = principal()
    if who.role == "cdg" and who.cdg_code != code:
        raise NotFound("CDG inconnu.", code="unknown_cdg")
    return csv_attachment(domain.tracking_csv(code), f"suivi-cdg-{code}.csv")
