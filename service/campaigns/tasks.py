"""The campaigns' task: one employer's kit, issued at most once whatever the retries.

The kit is rendered BEFORE the job is claimed (reading only), then stored and recorded in the
claiming transaction: the claim's lock (a row on PostgreSQL, the whole database on SQLite) is
held for the writes only, so that several processes render at the same time. A duplicate that
rendered for nothing finds the job done and drops its copy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import Task, shared_task
from celery import current_app as current_celery
from celery.signals import worker_process_init
from sqlalchemy import Integer, func, select

from service.backends import document_store, settings
from service.campaigns.domain import ISSUE_TASK, finish_if_last
from service.campaigns.models import Campaign
from service.engine import outbox
from service.engine.models import Job
from service.errors import NotFound, ServiceError
from service.extensions import db
from service.kits import notify
from service.kits.domain import PreparedKit, local_today, prepare_kit, store_kit
from service.kits.models import Kit
from service.kits.render import RenderedKit, render_kit
from service.reference.models import Cdg, Employer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """A kit rendered ahead of the claim for one job."""

    prepared: PreparedKit
    rendered: RenderedKit


def _subjects(job: Job, *, lock_employer: bool = False) -> tuple[Campaign, Employer]:
    """The job's campaign and employer; `lock_employer`: the employer's row locked (PostgreSQL)
    until the commit, in the same statement."""
    campaign = db.session.get(Campaign, job.campaign_id) if job.campaign_id else None
    query = select(Employer).where(Employer.id == int(job.payload.get("employer_id", 0)))
    if lock_employer:
        query = query.with_for_update(of=Employer).execution_options(populate_existing=True)
    employer = db.session.scalars(query).one_or_none()
    if campaign is None or employer is None:
        raise NotFound("Employeur ou campagne introuvable.", code="unknown_employer")
    return campaign, employer


def _kit_since(campaign: Campaign, employer: Employer) -> Kit | None:
    """A kit the employer received since the campaign began (from it or from anyone)."""
    return db.session.scalar(
        select(Kit)
        .where(Kit.employer_id == employer.id, Kit.issued_at >= campaign.started_at)
        .order_by(Kit.id.desc())
        .limit(1)
    )


def _prepare(employer: Employer, reference: str) -> PreparedKit:
    s = settings()
    return prepare_kit(
        employer,
        code_days=s.access_code_days,
        portal_url=f"{s.public_url}/portail",
        reference=reference,
    )


def render_ahead(job_id: int) -> Rendered | None:
    """Render the job's kit without writing anything, or None when there is nothing to render
    (the job is not pending, the employer has a kit, or the data is refused: the claimed run
    finds out again and records why)."""
    try:
        job = db.session.get(Job, job_id)
        if job is None or job.status != "pending" or job.task != ISSUE_TASK:
            return None
        campaign, employer = _subjects(job)
        if _kit_since(campaign, employer) is not None:
            return None
        prepared = _prepare(employer, str(job.payload["reference"]))
    except ServiceError:
        return None
    finally:
        db.session.rollback()  # no transaction open while rendering, nor when claiming
    try:
        return Rendered(prepared, render_kit(prepared.data))
    except Exception:  # rendered again in the claim, whose failure is counted and recorded
        log.warning("job %s: kit not rendered ahead", job_id, exc_info=True)
        return None


def issue_campaign_kit(job: Job, ahead: Rendered | None = None) -> None:
    """Issue the employer's kit under the reference reserved by the campaign and queue the « kit
    émis » e-mail, in the job's transaction (committed with the job done, or not at all).

    An employer that has received a kit since the campaign began gets none: the job is done and
    points to that kit.
    """
    # the employer's row locked (PostgreSQL) until the commit: another job for the same employer
    # (another campaign's, put back from the queue page) waits, then finds this kit
    campaign, employer = _subjects(job, lock_employer=True)
    since = _kit_since(campaign, employer)
    if since is not None:
        kit_id = since.id
    else:
        if ahead is None or ahead.prepared.employer_id != employer.id:
            prepared = _prepare(employer, str(job.payload["reference"]))
            ahead = Rendered(prepared, render_kit(prepared.data))
        issued = store_kit(
            ahead.prepared, ahead.rendered, store=document_store(), actor=campaign.started_by
        )
        notify.kit_issued(issued.kit)
        kit_id = issued.kit.id
    finish_if_last(campaign.id, job.id)
    job.kit_id = kit_id  # written with the job's status, in one UPDATE at the commit


def run_campaign_job(job_id: int) -> outbox.Outcome:
    """Render ahead, then claim and issue (what the task and the CLI's local processes do)."""
    ahead = render_ahead(job_id)
    return outbox.run_job(job_id, lambda job: issue_campaign_kit(job, ahead))


@shared_task(name=ISSUE_TASK, bind=True, acks_late=True, ignore_result=True)
def issue_kit_task(self: Task, job_id: int) -> None:
    """As `outbox.job_task` declares tasks, with the rendering ahead of the claim."""
    outcome = run_campaign_job(job_id)
    if outcome.retry_in is not None:
        self.apply_async(args=[job_id], countdown=outcome.retry_in)


# `flask jobs run` and `outbox.run_here` run it too (rendering inside the claim there)
outbox.HANDLERS[ISSUE_TASK] = issue_campaign_kit


#: conventions whose kit a new worker process renders before its first task
WARM_CONVENTIONS = 3


def _warm_employers() -> list[Employer]:
    """One employer per convention, those of the CDGs with a running campaign first."""
    running = select(Campaign.cdg_code).where(Campaign.status == "running")
    first = (
        select(func.min(Employer.id))
        .join(Cdg, Employer.cdg_id == Cdg.id)
        .group_by(Employer.convention_id)
        .order_by(func.max(Cdg.code.in_(running).cast(Integer)).desc(), Employer.convention_id)
        .limit(WARM_CONVENTIONS)
    )
    return list(db.session.scalars(select(Employer).where(Employer.id.in_(first))))


def warm_up() -> int:
    """Render kits that nobody keeps (nothing written), so that a worker process's first kits
    do not pay for loading the templates and fonts, nor for the layout made once per
    convention: one kit per convention, those of running campaigns first. The number rendered;
    a failure is only logged (the first task pays instead)."""
    rendered = 0
    try:
        for employer in _warm_employers():
            reference = f"PSC-{employer.cdg.code}-{local_today().year}-000000"
            render_kit(_prepare(employer, reference).data)
            rendered += 1
    except Exception:
        log.warning("worker warm-up: kit not rendered", exc_info=True)
    finally:
        db.session.rollback()
    return rendered


@worker_process_init.connect
def _warm_worker_process(**_: Any) -> None:
    """Each pool process of a Celery worker warms up before it takes its first task (after
    `celery_app` gave it connections of its own)."""
    flask_app = getattr(current_celery, "flask_app", None)
    if flask_app is None:
        return
    started = time.perf_counter()
    with flask_app.app_context():
        try:
            rendered = warm_up()
        finally:
            db.session.remove()
    log.info(
        "worker process warmed up: %d kit(s) in %.1f s", rendered, time.perf_counter() - started
    )
