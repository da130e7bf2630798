"""What staff see of the background work: workers that answer, campaigns and their progress,
pending jobs by kind, failed jobs with what they were about, and retrying them.

Read from the outbox rows (`Job`), the campaigns and the workers' heartbeats; every listing is
bounded (keyset pagination on ids), so that a national campaign's 35 000 rows never load at once.
This package sits above the engine and the domain packages it names (kits, employers): the
engine itself never imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from service import labels
from service.campaigns.domain import reopen
from service.campaigns.models import Campaign
from service.engine import outbox
from service.engine.celery_app import live_workers
from service.engine.models import JOB_STATES, Job, WorkerHeartbeat
from service.errors import Conflict, InvalidInput, NotFound
from service.extensions import db
from service.formatting import siret as format_siret
from service.kits.models import Kit
from service.reference.models import Employer

#: one page of failed jobs, of campaigns
PAGE = 50
CAMPAIGN_PAGE = 20


@dataclass(frozen=True)
class KindCount:
    task: str
    kind: str
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class CampaignProgress:
    campaign: Campaign
    done: int = 0
    failed: int = 0
    pending: int = 0

    @property
    def processed(self) -> int:
        return self.done + self.failed


@dataclass(frozen=True)
class FailedJob:
    job: Job
    kind: str
    #: what the job was about, starting a sentence (« Courriel à … », « Albi (SIRET …) »)
    subject: str
    error: str
    #: the same inside a sentence: its common words in lower case, names as they are written
    about: str = ""
    #: the SIRET of the employer it was about, when there is one (a link to its page)
    siret: str | None = None

    @property
    def permanent(self) -> bool:
        """Failed before its last attempt: bad data (a `ServiceError`), not retried by itself."""
        return self.job.status == "failed" and self.job.attempts < self.job.max_attempts


@dataclass(frozen=True)
class Subject:
    """What a job was about, as written inside a sentence, and its employer's SIRET."""

    text: str
    siret: str | None = None

    @property
    def sentence_start(self) -> str:
        return self.text[:1].upper() + self.text[1:] if self.text else "—"


@dataclass(frozen=True)
class Page:
    items: list[Any] = field(default_factory=list)
    #: the cursor of the next page (the last id shown), None at the end
    next: int | None = None


def workers() -> list[WorkerHeartbeat]:
    """Workers seen in the last 30 seconds, the longest running first."""
    return sorted(live_workers(), key=lambda w: (w.started_at, w.hostname))


def job_counts() -> dict[str, int]:
    """Pending (due or waiting for a retry) and failed jobs: the health answer."""
    rows = db.session.execute(
        select(Job.status, func.count(Job.id))
        .where(Job.status.in_(("pending", "failed")))
        .group_by(Job.status)
    ).all()
    counts = {"pending": 0, "failed": 0}
    counts.update({status: int(n) for status, n in rows})
    return counts


def pending_by_kind() -> list[KindCount]:
    rows = db.session.execute(
        select(Job.task, func.count(Job.id), func.min(Job.created_at))
        .where(Job.status == "pending")
        .group_by(Job.task)
        .order_by(Job.task)
    ).all()
    return [KindCount(task, labels.job_kind(task), int(n), oldest) for task, n, oldest in rows]


def failed_by_kind() -> list[KindCount]:
    rows = db.session.execute(
        select(Job.task, func.count(Job.id), func.min(Job.created_at))
        .where(Job.status == "failed")
        .group_by(Job.task)
        .order_by(Job.task)
    ).all()
    return [KindCount(task, labels.job_kind(task), int(n), oldest) for task, n, oldest in rows]


def campaigns(*, before: int | None = None, limit: int = CAMPAIGN_PAGE) -> Page:
    """The latest campaigns (newest first) with their progress counted from their jobs."""
    query = select(Campaign).order_by(Campaign.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Campaign.id < before)
    rows = list(db.session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    counts: dict[int, dict[str, int]] = {c.id: {} for c in rows}
    if rows:
        for campaign_id, status, n in db.session.execute(
            select(Job.campaign_id, Job.status, func.count(Job.id))
            .where(Job.campaign_id.in_(list(counts)))
            .group_by(Job.campaign_id, Job.status)
        ):
            counts[campaign_id][status] = int(n)
    items = [
        CampaignProgress(
            campaign=c,
            done=counts[c.id].get("done", 0),
            failed=counts[c.id].get("failed", 0),
            pending=counts[c.id].get("pending", 0),
        )
        for c in rows
    ]
    return Page(items, rows[-1].id if more else None)


def _subjects(jobs: Sequence[Job]) -> dict[int, Subject]:
    """What each job was about, in French: its kit (reference and employer), the e-mail's
    recipient, or the campaign's employer. Common words in lower case, names as written."""
    kit_ids = {j.kit_id for j in jobs if j.kit_id}
    employer_ids = {
        int(j.payload["employer_id"])
        for j in jobs
        if isinstance(j.payload, dict) and str(j.payload.get("employer_id", "")).isdigit()
    }
    kits = {
        kit.id: (kit.reference, name, siret)
        for kit, name, siret in db.session.execute(
            select(Kit, Employer.name, Employer.siret)
            .join(Employer, Employer.id == Kit.employer_id)
            .where(Kit.id.in_(kit_ids))
        )
    }
    employers = {
        e.id: e for e in db.session.scalars(select(Employer).where(Employer.id.in_(employer_ids)))
    }
    subjects: dict[int, Subject] = {}
    for job in jobs:
        payload = job.payload if isinstance(job.payload, dict) else {}
        parts: list[str] = []
        siret: str | None = None
        if payload.get("to"):
            parts.append(f"courriel à {payload['to']}")
        if job.kit_id in kits:
            reference, name, siret = kits[job.kit_id]
            parts.append(f"kit {reference} ({name})")
        elif str(payload.get("employer_id", "")).isdigit():
            employer = employers.get(int(payload["employer_id"]))
            if employer is not None:
                siret = employer.siret
                parts.append(f"{employer.name} (SIRET {format_siret(employer.siret)})")
        if job.campaign_id and not parts:
            parts.append(f"campagne n° {job.campaign_id}")
        subjects[job.id] = Subject(" ; ".join(parts), siret)
    return subjects


def _failed_job(job: Job, subject: Subject) -> FailedJob:
    return FailedJob(
        job=job,
        kind=labels.job_kind(job.task),
        subject=subject.sentence_start,
        error=labels.job_error(job.last_error),
        about=subject.text or "—",
        siret=subject.siret,
    )


def failed_jobs(*, before: int | None = None, limit: int = PAGE) -> Page:
    """Failed jobs, the latest first, `limit` at a time (keyset on the id)."""
    return jobs_page("failed", before=before, limit=limit)


def jobs_page(status: str, *, before: int | None = None, limit: int = PAGE) -> Page:
    if status not in JOB_STATES:
        raise InvalidInput(
            "État de tâche inconnu : « pending », « done » ou « failed ».",
            code="invalid_status",
            field="status",
        )
    query = select(Job).where(Job.status == status).order_by(Job.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Job.id < before)
    rows = list(db.session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    subjects = _subjects(rows)
    items = [_failed_job(j, subjects[j.id]) for j in rows]
    return Page(items, rows[-1].id if more else None)


def describe(job: Job) -> FailedJob:
    return _failed_job(job, _subjects([job])[job.id])


def retry_job(job_id: int) -> Job:
    """A failed job, pending again (sent to the workers once the caller commits)."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound("Tâche introuvable.", code="unknown_job")
    if job.status != "failed":
        raise Conflict(
            "Seule une tâche en échec peut être relancée : celle-ci est "
            f"« {labels.job_state(job.status).lower()} ».",
            code="job_not_failed",
        )
    reopen([job.campaign_id])  # its campaign runs again (« En cours ») until the job is over
    return outbox.retry(job_id)


def retry_all_failed(*, task: str | None = None) -> int:
    """Every failed job (of one task, when given) pending again, in the caller's transaction,
    sent to the workers once it commits (`outbox.retry_many`). Their campaigns run again; 409
    `campaign_running` when one of them cannot (another campaign of its CDG runs meanwhile):
    nothing is retried."""
    query = select(Job.id, Job.task, Job.campaign_id).where(Job.status == "failed")
    if task is not None:
        query = query.where(Job.task == task)
    rows = db.session.execute(query.order_by(Job.id)).all()
    reopen({row.campaign_id for row in rows})  # their campaigns run again
    outbox.retry_many([(row.id, row.task) for row in rows])
    return len(rows)
