"""Recording and verifying the audit trail (a hash chain over append-only rows)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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
    """Append an event in the caller's transaction, after the previous one in any process."""
    head = _lock_head()
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
    db.session.add(row)
    db.session.flush()
    return row


def _lock_head() -> AuditHead:
    """Take the chain's write lock first, then read the head (its count already bumped).

    UPDATE before SELECT: on PostgreSQL the UPDATE takes the head row's lock and waits for the
    transaction holding it; on SQLite (pysqlite begins a transaction only before a write) it
    takes the database write lock, waiting up to the connection's busy_timeout. A locking
    SELECT first would not lock anything on SQLite, and two writers would share a predecessor.
    """
    bump = (
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(count=AuditHead.count + 1)
        .execution_options(synchronize_session=False)
    )
    if db.session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
        _create_head()
        db.session.execute(bump)
    return db.session.execute(
        select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)
    ).scalar_one()


def _create_head() -> None:
    """The migration creates the head row; recreate it (emptied database) without racing."""
    values = {"id": 1, "last_hash": GENESIS, "count": 0}
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        db.session.execute(pg_insert(AuditHead).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        db.session.execute(sqlite_insert(AuditHead).values(values).on_conflict_do_nothing())
    else:
        db.session.execute(insert(AuditHead).values(values))


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
