"""`GET /api/v1/jobs`, `POST /api/v1/jobs/{id}/retry`: the queue for staff's tools."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from service.api import query_int, route
from service.extensions import db
from service.jobs import domain
from service.jobs.domain import FailedJob
from service.timeutil import iso

STAFF = ("admin", "staff")


def job_json(item: FailedJob) -> dict[str, Any]:
    job = item.job
    return {
        "id": job.id,
        "task": job.task,
        "kind": item.kind,
        "status": job.status,
        "subject": item.subject,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "error": item.error,
        "kit_id": job.kit_id,
        "campaign_id": job.campaign_id,
        "created_at": iso(job.created_at),
        "next_attempt_at": iso(job.next_attempt_at),
        "started_at": iso(job.started_at),
        "done_at": iso(job.done_at),
    }


@route(
    "/jobs",
    summary="Tâches de fond par état (pagination par curseur, les plus récentes d'abord)",
    roles=STAFF,
    query={
        "status": {
            "description": "état : pending, done ou failed (par défaut failed)",
            "schema": {"type": "string", "enum": ["pending", "done", "failed"]},
        },
        "limit": "200 au plus",
        "after": "curseur : l'identifiant « next » de la page précédente",
    },
)
def list_jobs() -> Any:
    limit = min(query_int("limit", 50), 200)
    before = query_int("after", 0) if request.args.get("after") else None
    page = domain.jobs_page(request.args.get("status") or "failed", before=before, limit=limit)
    return jsonify(
        {
            "items": [job_json(item) for item in page.items],
            "next": page.next,
            "counts": domain.job_counts(),
        }
    )


@route(
    "/jobs/<int:job_id>/retry",
    ("POST",),
    summary="Relance une tâche en échec (de nouveau en attente, envoyée aux workers)",
    roles=STAFF,
    responses={
        200: "Tâche relancée (sa campagne, s'il y en a une, est de nouveau en cours)",
        409: "La tâche n'est pas en échec, ou une autre campagne de son CDG est en cours",
    },
)
def retry_job(job_id: int) -> Any:
    job = domain.retry_job(job_id)
    db.session.commit()  # the job is sent to the broker once committed
    return jsonify(job_json(domain.describe(job)))
