"""File answers shared by the API and the pages: stored objects streamed, CSV attachments."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context

from service.archive.models import ArchiveRecord
from service.backends import archive_store, document_store
from storage import ObjectStore


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

    response = Response(stream_with_context(generate()), mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if size is not None:
        response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def archived_copy(rec: ArchiveRecord) -> Response:
    name = rec.key.rsplit("/", 1)[-1]
    mimetype = "application/json" if name.endswith(".json") else "application/pdf"
    return stream_object(
        rec.key, mimetype, f"{rec.kit_reference}-{name}", rec.size, store=archive_store()
    )


def csv_attachment(body: str, filename: str) -> Response:
    response = Response(body.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
