"""What the API and the pages both do with returns: receive an upload, countersign a kit."""

from __future__ import annotations

from datetime import timedelta
from typing import IO

from service.accounts.auth import Principal
from service.backends import document_store, settings, signing_key, trust_settings
from service.extensions import db
from service.kits import notify
from service.kits.models import Kit
from service.returns.domain import (
    ReturnContext,
    UploadQuota,
    countersign_kit,
    receive_return,
    sweep_uploads,
)
from service.returns.models import KitReturn
from signing.errors import Refused


def receive_upload(
    kit: Kit, kind: str, stream: IO[bytes], *, principal: Principal, address: str | None
) -> KitReturn:
    """Verify and record an upload; the employer is told by e-mail. `Refused` is re-raised."""
    s = settings()
    max_bytes = s.max_upload_mb * 1024 * 1024
    ctx = ReturnContext(
        store=document_store(),
        trust=trust_settings(),
        max_bytes=max_bytes,
        quota=UploadQuota(uploads=s.upload_quota_count, bytes=s.upload_quota_mb * 1024 * 1024),
    )
    try:
        ret = receive_return(
            kit, kind, stream.read(max_bytes + 1), principal=principal, address=address, ctx=ctx
        )
    except Refused as refusal:
        notify.return_refused(kit, kind, refusal.message)
        db.session.commit()
        raise
    return ret


def countersign_and_archive(kit_id: int, *, principal: Principal) -> Kit:
    """Countersign; the archive copies are jobs written in the same transaction, run by the
    workers after the commit (never in the request)."""
    return countersign_kit(
        kit_id,
        principal=principal,
        store=document_store(),
        key=signing_key(),
        tsa_url=settings().signing_tsa_url,
    )


def sweep_leftover_uploads(*, older_than_minutes: int | None = None) -> int:
    """Delete upload copies no return refers to, older than QUARANTINE_MAX_AGE_MINUTES."""
    minutes = (
        settings().quarantine_max_age_minutes if older_than_minutes is None else older_than_minutes
    )
    return sweep_uploads(store=document_store(), older_than=timedelta(minutes=minutes))
