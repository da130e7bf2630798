"""Archived copies as files: streamed from the archive store, every download recorded."""

from __future__ import annotations

from flask import Response, has_request_context, request

from service.archive.models import ArchiveRecord
from service.backends import archive_store
from service.downloads import record_download, stream_object


def record_archive_download(rec: ArchiveRecord, *, actor: str) -> None:
    """`record_download` for an archived copy, from the current request's client address."""
    record_download(
        kit_id=rec.kit_id,
        file=f"archive/{rec.kind}",
        actor=actor,
        address=request.remote_addr if has_request_context() else None,
        siret=rec.siret,
        sha256=rec.sha256,
    )


def archived_copy(rec: ArchiveRecord) -> Response:
    name = rec.key.rsplit("/", 1)[-1]
    mimetype = "application/json" if name.endswith(".json") else "application/pdf"
    return stream_object(
        rec.key, mimetype, f"{rec.kit_reference}-{name}", rec.size, store=archive_store()
    )
