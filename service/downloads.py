"""File answers shared by the API and the pages: stored objects streamed, CSV attachments,
and the record of every download in the audit trail (portal, pages and API alike)."""

from __future__ import annotations

from typing import Any

from flask import Response, has_request_context, request

from service.audit.domain import record
from service.backends import document_store
from service.csvfile import csv_text, safe_cell
from service.extensions import db
from storage import ObjectStore


def record_download(
    *,
    kit_id: int,
    file: str,
    actor: str,
    address: str | None,
    siret: str | None = None,
    sha256: str | None = None,
) -> None:
    """Append a `downloaded` event (who, from where, which file and its SHA-256) and commit.

    Called before the file is streamed, so that a download is never served unrecorded."""
    record(
        "downloaded",
        actor=actor,
        kit_id=kit_id,
        siret=siret,
        address=address,
        sha256_after=sha256,
        details={"file": file},
    )
    db.session.commit()


def record_kit_download(kit: Any, *, file: str, actor: str, sha256: str | None = None) -> None:
    """`record_download` for a file of `kit`, from the current request's client address."""
    record_download(
        kit_id=kit.id,
        file=file,
        actor=actor,
        address=request.remote_addr if has_request_context() else None,
        siret=kit.employer.siret,
        sha256=sha256,
    )


def stream_object(
    key: str,
    mimetype: str,
    filename: str,
    size: int | None = None,
    *,
    store: ObjectStore | None = None,
) -> Response:
    """Stream an object (the document store by default) as an attachment."""
    chunks = (store or document_store()).iter_chunks(key)
    first = next(chunks, b"")  # surfaces a missing object before the response starts

    def generate() -> Any:
        yield first
        yield from chunks

    # the chunks are bound to the store already: no request context is kept alive while a slow
    # client reads (a context held by an unread generator is popped out of order later)
    response = bytes_attachment(generate(), mimetype, filename)
    if size is not None:
        response.headers["Content-Length"] = str(size)
    return response


def bytes_attachment(data: Any, mimetype: str, filename: str) -> Response:
    """Bytes (or their chunks) as a private attachment: a kit's ZIP made for this answer, the
    stored objects `stream_object` reads."""
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def csv_attachment(body: str, filename: str) -> Response:
    response = Response(body.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


__all__ = [
    "csv_attachment",
    "csv_text",
    "record_download",
    "safe_cell",
    "stream_object",
]
