"""`GET /api/v1/cdgs/{code}/archive.zip`: every archived copy of a CDG, streamed in one ZIP."""

from __future__ import annotations

from typing import Any

from flask import Response, has_request_context, request

from service.api import principal, route
from service.archive import bundle
from service.backends import archive_store
from service.extensions import db
from service.reference.domain import get_cdg
from service.timeutil import utcnow

READERS = ("admin", "staff", "cdg")


def archive_zip_response(code: str, *, who: Any) -> Response:
    """Check the scope (another CDG's token: 404), record the download, commit, then stream."""
    cdg = get_cdg(code, principal=who)
    items = bundle.members(cdg.code)
    zs = bundle.build_zip(items, archive_store(), bundle.summary_csv(items))
    size = len(zs)
    bundle.record_download(
        cdg.code,
        items,
        actor=who.actor,
        address=request.remote_addr if has_request_context() else None,
    )
    db.session.commit()
    # the stream holds the store and the list of members: no request context while it is read
    response = Response(iter(zs), mimetype="application/zip")
    filename = f"archive-cdg-{cdg.code}-{utcnow():%Y-%m-%d}.zip"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@route(
    "/cdgs/<code>/archive.zip",
    summary="Toutes les copies archivées du CDG et leurs manifestes, en un ZIP (flux), "
    "avec « sommaire.csv »",
    roles=READERS,
    responses={200: "ZIP"},
)
def cdg_archive_zip(code: str) -> Response:
    return archive_zip_response(code, who=principal())
