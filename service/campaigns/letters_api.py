"""`GET /api/v1/campaigns/{id}/letters.pdf`: the campaign's access letters, ready to print."""

from __future__ import annotations

from typing import IO, Any

from flask import Response, has_request_context, request

from service.api import principal, route
from service.backends import document_store
from service.campaigns import letters as domain
from service.extensions import db

STAFF = ("admin", "staff")


def _file_response(out: IO[bytes], size: int, filename: str, mimetype: str) -> Response:
    """Stream a temporary file, closed once read (no request context kept alive)."""

    def generate() -> Any:
        try:
            while chunk := out.read(1 << 20):
                yield chunk
        finally:
            out.close()

    response = Response(generate(), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def letters_response(campaign_id: int, *, actor: str) -> Response:
    """Build the PDF, record the download in each kit's journal, commit, then stream it."""
    letters = domain.campaign_letters(campaign_id)
    out, size = domain.letters_file(letters, document_store())
    try:
        domain.record_letters_download(
            letters, actor=actor, address=request.remote_addr if has_request_context() else None
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        out.close()
        raise
    response = _file_response(out, size, letters.filename, "application/pdf")
    response.headers["X-Letters-Count"] = str(len(letters.letters))
    return response


@route(
    "/campaigns/<int:campaign_id>/letters.pdf",
    summary="Tous les courriers d'accès de la campagne en un PDF prêt à imprimer "
    "(partiel tant qu'elle est en cours)",
    roles=STAFF,
    responses={200: "PDF", 409: "Aucun kit encore émis par la campagne"},
)
def campaign_letters(campaign_id: int) -> Response:
    return letters_response(campaign_id, actor=principal().actor)
