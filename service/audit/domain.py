"""Recording and verifying the audit trail (a hash chain over append-only rows)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from service.audit.models import AuditEvent, AuditHead
from service.extensions import db
from service.timeutil import iso, utcnow

GENESIS = "0" * 64


def _digest(prev: str, event: AuditEvent) -> str:
    payload = json.dumps(
        {
            "event": event.event,
            "kit_id": event.kit_id,
            "siret": event.siret,
            "actor": event.actor,
            "address": event.address,
            "at": iso(event.at),
            "sha256_before": event.sha256_before,
            "sha256_after": event.sha256_after,
            "details": event.details or {},
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev + payload).encode()).hexdigest()


def record(
    event: str,
    *,
    actor: str,
    kit_id: int | None = None,
    siret: str | None = None,
    address: str | None = None,
    sha256_before: str | None = None,
    sha256_after: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event in the caller's transaction; the head row lock keeps the chain linear."""
    head = db.session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, last_hash=GENESIS, count=0)
        db.session.add(head)
    row = AuditEvent(
        event=event,
        actor=actor,
        kit_id=kit_id,
        siret=siret,
        address=address,
        at=utcnow().replace(microsecond=0),
        sha256_before=sha256_before,
        sha256_after=sha256_after,
        details=details or {},
        prev_hash=head.last_hash,
    )
    row.hash = _digest(head.last_hash, row)
    head.last_hash = row.hash
    head.count += 1
    db.session.add(row)
    db.session.flush()
    return row


def kit_events(kit_id: int) -> Sequence[AuditEvent]:
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.kit_id == kit_id).order_by(AuditEvent.id)
    ).all()


def verify_chain() -> list[str]:
    """Problems found in the chain (empty when intact): edited, inserted or deleted rows."""
    problems: list[str] = []
    prev = GENESIS
    count = 0
    for row in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
        count += 1
        if row.prev_hash != prev:
            problems.append(f"événement {row.id} : lien rompu (ligne insérée ou supprimée avant)")
        if _digest(row.prev_hash, row) != row.hash:
            problems.append(f"événement {row.id} : contenu modifié")
        prev = row.hash
    head = db.session.get(AuditHead, 1)
    if head is not None and (head.last_hash != prev or head.count != count):
        problems.append(
            f"fin de chaîne : {count} événement(s) pour {head.count} enregistré(s) "
            "(ligne supprimée ou ajoutée en fin de chaîne)"
        )
    return problems
