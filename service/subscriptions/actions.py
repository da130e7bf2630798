"""What the API and the pages both do with requests and prerequisites: the configured store and
upload bound, and the multipart request read the same way."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from flask import Response, request
from pydantic import ValidationError

from service.accounts.auth import Principal
from service.api import field_errors
from service.backends import document_store, settings
from service.downloads import stream_object
from service.errors import InvalidInput
from service.reference.models import Employer
from service.subscriptions import domain
from service.subscriptions.domain import REQUEST_FILES, Upload
from service.subscriptions.models import Prerequisite, SubscriptionRequest
from service.subscriptions.schemas import SubscriptionIn


def max_bytes() -> int:
    return settings().max_upload_mb * 1024 * 1024


def read_uploads() -> dict[str, Upload]:
    """The request's files present in the multipart body (each read within the bound)."""
    out = {}
    limit = max_bytes()
    for field in REQUEST_FILES:
        upload = request.files.get(field)
        if upload is not None and upload.filename is not None:
            out[field] = Upload(upload.stream.read(limit + 1), upload.filename or "")
    return out


def form_data() -> Any:
    """The multipart `data` part: a form field, or a file part holding the JSON text."""
    raw = request.form.get("data")
    part = request.files.get("data")
    if raw is None and part is not None:
        raw = part.stream.read(65536).decode("utf-8", errors="replace")
    return raw


def parse_data(raw: Any) -> SubscriptionIn:
    """The multipart `data` field (JSON text) as a `SubscriptionIn`; 422 with the first field."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidInput(
                "Le champ « data » doit contenir un objet JSON.", code="invalid_json", field="data"
            ) from None
    if not isinstance(raw, dict):
        raise InvalidInput(
            "Le champ « data » doit contenir un objet JSON.", code="invalid_json", field="data"
        )
    try:
        return SubscriptionIn.model_validate(raw)
    except ValidationError as exc:
        raise field_errors(exc)[0] from exc


def submit(cdg_code: str, data: SubscriptionIn, uploads: dict[str, Upload]) -> SubscriptionRequest:
    return domain.submit_request(
        cdg_code=cdg_code,
        data=data,
        uploads=uploads,
        address=request.remote_addr,
        store=document_store(),
        max_bytes=max_bytes(),
    )


def decide(
    request_id: int,
    *,
    accept: bool,
    reason: str | None,
    principal: Principal,
    version: int | None = None,
) -> SubscriptionRequest:
    return domain.decide_request(
        request_id,
        accept=accept,
        reason=reason,
        principal=principal,
        store=document_store(),
        version=version,
    )


def receive(
    employer: Employer, kind: str, *, received_on: date | None, principal: Principal
) -> Prerequisite:
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput(
            "Joignez le fichier (champ « file »).", code="file_missing", field="file"
        )
    return domain.receive_prerequisite(
        employer,
        kind,
        upload.stream.read(max_bytes() + 1),
        received_on=received_on,
        principal=principal,
        address=request.remote_addr,
        store=document_store(),
        max_bytes=max_bytes(),
    )


def parse_received_on(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            "Date invalide : format AAAA-MM-JJ attendu.", code="invalid_field", field="received_on"
        ) from None


def stream(key: str, mimetype: str, filename: str, size: int) -> Response:
    return stream_object(key, mimetype, filename, size)
