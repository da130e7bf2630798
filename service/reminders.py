"""Reminding employers whose signed pieces are missing: beat's daily task, `flask kits remind`
and `POST /api/v1/cdgs/{code}/reminders` all run `remind_waiting`.

A reminder is an audit event (`reminder`) and an e-mail job, written in one transaction; a kit
reminded within the last `after_days` days (at least a day) is not reminded again, so beat's run,
a staff request and the command may follow each other without reminding twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task
from flask import jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from service.api import json_body, parse, principal, route
from service.audit.domain import record
from service.audit.models import AuditEvent
from service.config import settings
from service.extensions import db
from service.kits import notify
from service.kits.lifecycle import ISSUED
from service.kits.models import Kit
from service.reference.domain import get_cdg
from service.reference.models import Cdg, Employer
from service.timeutil import utcnow

REMIND_TASK = "psc.kits.remind_all"
#: kits reminded per transaction (the audit chain's lock is held until each commit)
CHUNK = 100
#: the longest `after_days` accepted (ten years)
MAX_AFTER_DAYS = 3650


def waiting_kits(after_days: int, *, cdg_code: str | None = None) -> list[int]:
    """Open kits (issued, pieces not all signed) issued at least `after_days` days ago."""
    query = select(Kit.id).where(
        Kit.status == ISSUED, Kit.issued_at <= utcnow() - timedelta(days=after_days)
    )
    if cdg_code is not None:
        query = (
            query.join(Employer, Employer.id == Kit.employer_id)
            .join(Cdg, Cdg.id == Employer.cdg_id)
            .where(Cdg.code == cdg_code)
        )
    return list(db.session.scalars(query.order_by(Kit.id)))


def remind_waiting(after_days: int, *, actor: str, cdg_code: str | None = None) -> int:
    """Remind every waiting kit not reminded within `after_days` days; the number reminded.

    Commits every CHUNK kits. Each chunk's kits are locked first (PostgreSQL), so that two runs
    at once remind a kit once: the second waits, then sees the first's reminder.
    """
    window = utcnow() - timedelta(days=max(after_days, 1))
    ids = waiting_kits(after_days, cdg_code=cdg_code)
    reminded = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        kits = db.session.scalars(
            select(Kit).where(Kit.id.in_(chunk), Kit.status == ISSUED).with_for_update()
        ).all()
        recent = set(
            db.session.scalars(
                select(AuditEvent.kit_id).where(
                    AuditEvent.kit_id.in_(chunk),
                    AuditEvent.event == "reminder",
                    AuditEvent.at >= window,
                )
            )
        )
        for kit in kits:
            if kit.id in recent:
                continue
            record("reminder", actor=actor, kit_id=kit.id, siret=kit.employer.siret)
            notify.reminder(kit)
            reminded += 1
        db.session.commit()
    return reminded


@shared_task(name=REMIND_TASK, ignore_result=True)
def remind_all(after_days: int | None = None) -> int:
    """Beat, daily: every CDG's waiting kits (REMIND_AFTER_DAYS)."""
    days = settings().remind_after_days if after_days is None else after_days
    return remind_waiting(days, actor="system")


# -- the API -------------------------------------------------------------------------------


class RemindersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after_days: int | None = Field(default=None, ge=0, le=MAX_AFTER_DAYS)


@route(
    "/cdgs/<code>/reminders",
    ("POST",),
    summary="Relancer les employeurs du CDG dont les pièces signées manquent",
    roles=("admin", "staff"),
    body=RemindersIn,
    responses={202: "Relances mises en file d'envoi", 404: "CDG inconnu"},
)
def remind_cdg(code: str) -> Any:
    body = parse(RemindersIn, json_body()) if request.get_data(cache=True) else RemindersIn()
    cdg = get_cdg(code)
    days = settings().remind_after_days if body.after_days is None else body.after_days
    queued = remind_waiting(days, actor=principal().actor, cdg_code=cdg.code)
    return jsonify({"queued": queued, "after_days": days}), 202
