"""Campaigns: a kit for every employer of a CDG that has none, one job per employer, carried out
by the workers (or by local processes when none answers). Progress is read from the jobs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from service.campaigns.models import Campaign
from service.engine import outbox
from service.engine.models import Job
from service.errors import Conflict, NotFound
from service.extensions import db
from service.kits.domain import employers_without_kit, local_today, reserve_references
from service.reference.domain import get_cdg
from service.reference.models import Employer
from service.subscriptions.domain import employers_missing_prerequisites
from service.timeutil import utcnow

#: the Celery task issuing one employer's kit of a campaign
ISSUE_TASK = "psc.campaigns.issue_kit"
#: a kit that cannot be issued after this many attempts is listed as failed (retriable)
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Progress:
    """A campaign's jobs counted by state."""

    total: int
    done: int
    failed: int
    pending: int

    @property
    def status(self) -> str:
        """`running` while a job is pending, whoever put it back (this module's retry, or the
        queue page's), else `finished`."""
        return "running" if self.pending else "finished"


@dataclass(frozen=True)
class Failure:
    siret: str
    name: str
    error: str


@dataclass(frozen=True)
class CampaignView:
    """What the dashboard lists of a recent campaign."""

    id: int
    cdg_code: str
    status: str
    total: int
    done: int
    failed: int


def running_campaign(cdg_code: str) -> Campaign | None:
    return db.session.scalar(
        select(Campaign).where(Campaign.cdg_code == cdg_code, Campaign.status == "running")
    )


def start_campaign(cdg_code: str, *, actor: str, send: bool = True) -> Campaign:
    """Start (and commit) a campaign for the CDG's employers without a kit: the campaign, the
    references reserved up front and one job per employer, in one transaction. The jobs are
    handed to the workers after the commit (`send=False`: the caller runs them itself).

    409 `campaign_running` while another campaign of the CDG runs; 409 `nothing_to_issue` when
    every employer has a kit.
    """
    cdg = get_cdg(cdg_code)
    running = running_campaign(cdg.code)
    if running is not None:
        settle(running)
        if running.status == "running":
            db.session.rollback()
            raise Conflict(
                f"Une campagne est déjà en cours pour le CDG {cdg.code} (n° {running.id}) : "
                "attendez sa fin avant d'en lancer une autre.",
                code="campaign_running",
            )
    without_kit = employers_without_kit(cdg.code)
    # hE: employers still missing a prerequisite wait for their papers (listed apart, not failed)
    missing = employers_missing_prerequisites(e.id for e in without_kit)
    employers = [e for e in without_kit if e.id not in missing]
    if not employers:
        db.session.rollback()
        if missing:
            raise Conflict(
                f"Aucun employeur du CDG {cdg.code} n'est prêt : {len(missing)} "
                f"{'attendent' if len(missing) > 1 else 'attend'} encore des pièces préalables "
                "(demande de souscription, délibération, avis du CST, liste des éléments de "
                "rémunération).",
                code="nothing_to_issue",
            )
        raise Conflict(
            f"Tous les employeurs du CDG {cdg.code} ont déjà un kit : aucune campagne à lancer.",
            code="nothing_to_issue",
        )
    campaign = Campaign(
        cdg_code=cdg.code,
        status="running",
        total=len(employers),
        started_by=actor,
        started_at=utcnow(),
    )
    db.session.add(campaign)
    try:
        db.session.flush()
    except IntegrityError as exc:  # another start won the race
        db.session.rollback()
        raise Conflict(
            f"Une campagne est déjà en cours pour le CDG {cdg.code} : attendez sa fin avant "
            "d'en lancer une autre.",
            code="campaign_running",
        ) from exc
    references = reserve_references(cdg.code, local_today().year, len(employers))
    for employer, reference in zip(employers, references, strict=True):
        outbox.enqueue(
            ISSUE_TASK,
            {"employer_id": employer.id, "reference": reference},
            campaign_id=campaign.id,
            max_attempts=MAX_ATTEMPTS,
            send=send,
        )
    db.session.commit()
    return campaign


def get_campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("Campagne introuvable.", code="unknown_campaign")
    return campaign


def list_campaigns(cdg_code: str | None = None, *, limit: int = 100) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if cdg_code:
        query = query.where(Campaign.cdg_code == cdg_code)
    return list(db.session.scalars(query))


def progress(campaign: Campaign) -> Progress:
    """The campaign's jobs counted by state, read from the database."""
    counts = dict(
        db.session.execute(
            select(Job.status, func.count(Job.id))
            .where(Job.campaign_id == campaign.id)
            .group_by(Job.status)
        ).all()
    )
    return Progress(
        total=campaign.total,
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        pending=counts.get("pending", 0),
    )


def settle(campaign: Campaign, counts: Progress | None = None) -> Progress:
    """Mark a running campaign finished once none of its jobs is pending (the last job's task
    does it; a job that failed last leaves it to this check on read). The caller commits."""
    counts = counts or progress(campaign)
    if campaign.status == "running" and counts.pending == 0:
        last = db.session.scalar(
            select(func.max(Job.done_at)).where(Job.campaign_id == campaign.id)
        )
        campaign.status, campaign.finished_at = "finished", last or utcnow()
    return counts


def finish_if_last(campaign_id: int, job_id: int) -> None:
    """From a job's task, before its commit: the campaign is finished when no other job is
    pending. The campaign's row is locked so that two last jobs finishing together see each
    other's outcome (the second waits for the first's commit)."""
    campaign = db.session.execute(
        select(Campaign).where(Campaign.id == campaign_id).with_for_update()
    ).scalar_one_or_none()
    if campaign is None:
        return
    others = db.session.scalar(
        select(func.count(Job.id)).where(
            Job.campaign_id == campaign_id, Job.status == "pending", Job.id != job_id
        )
    )
    if not others:
        campaign.status, campaign.finished_at = "finished", utcnow()


def failures(campaign: Campaign) -> list[Failure]:
    """The failed kits with their reason (French), by employer name."""
    jobs = list(
        db.session.scalars(
            select(Job).where(Job.campaign_id == campaign.id, Job.status == "failed")
        )
    )
    ids = {int(job.payload.get("employer_id", 0)) for job in jobs}
    employers = {e.id: e for e in db.session.scalars(select(Employer).where(Employer.id.in_(ids)))}
    rows = []
    for job in jobs:
        employer = employers.get(int(job.payload.get("employer_id", 0)))
        rows.append(
            Failure(
                siret=employer.siret if employer else "",
                name=employer.name if employer else "Employeur supprimé",
                error=_readable(job.last_error),
            )
        )
    return sorted(rows, key=lambda f: (f.name, f.siret))


#: what `outbox` records of an unexpected exception (« OperationalError: … »), not for readers
_TECHNICAL = re.compile(r"^[A-Za-z_][\w.]*: ")


def _readable(error: str | None) -> str:
    """The French reason of a failure; an unexpected exception's text stays in the job."""
    if not error:
        return "Erreur inconnue."
    if _TECHNICAL.match(error):
        return "Erreur technique, persistante après plusieurs essais : relancez l'émission."
    return error


def pending_job_ids(campaign: Campaign) -> list[int]:
    return list(
        db.session.scalars(
            select(Job.id)
            .where(Job.campaign_id == campaign.id, Job.status == "pending")
            .order_by(Job.id)
        )
    )


def reopen(campaign_ids: Iterable[int | None]) -> None:
    """The finished campaigns among these run again, because some of their jobs are about to be
    pending again (a retry from the campaign's page, the queue page or the API): in the caller's
    transaction, before the jobs are put back.

    409 `campaign_running` when another campaign of the same CDG runs meanwhile (a CDG has one
    running campaign at a time).
    """
    ids = {i for i in campaign_ids if i is not None}
    if not ids:
        return
    campaigns = list(
        db.session.scalars(
            select(Campaign)
            .where(Campaign.id.in_(ids), Campaign.status != "running")
            .order_by(Campaign.id)
        )
    )
    for campaign in campaigns:
        other = running_campaign(campaign.cdg_code)
        if other is not None and other.id != campaign.id:
            settle(other)
            if other.status == "running":
                raise Conflict(
                    f"Une autre campagne est en cours pour le CDG {campaign.cdg_code} "
                    f"(n° {other.id}) : relancez les échecs de la campagne n° {campaign.id} "
                    "après sa fin.",
                    code="campaign_running",
                )
        campaign.status, campaign.finished_at = "running", None
        try:
            db.session.flush()
        except IntegrityError as exc:  # another campaign of the CDG started meanwhile
            db.session.rollback()
            raise Conflict(
                f"Une autre campagne est en cours pour le CDG {campaign.cdg_code} : relancez "
                f"les échecs de la campagne n° {campaign.id} après sa fin.",
                code="campaign_running",
            ) from exc


def retry_failed(campaign: Campaign) -> int:
    """Put the campaign's failed jobs back (sent after the caller's commit); it runs again.

    409 `campaign_running` when another campaign of the CDG runs meanwhile.
    """
    ids = list(
        db.session.scalars(
            select(Job.id).where(Job.campaign_id == campaign.id, Job.status == "failed")
        )
    )
    if not ids:
        return 0
    reopen([campaign.id])
    for job_id in ids:
        outbox.retry(job_id)
    return len(ids)


def recent(limit: int = 3) -> list[CampaignView]:
    """The latest campaigns with their progress (the dashboard)."""
    views = []
    for campaign in list_campaigns(limit=limit):
        counts = progress(campaign)
        views.append(
            CampaignView(
                campaign.id,
                campaign.cdg_code,
                counts.status,
                campaign.total,
                counts.done,
                counts.failed,
            )
        )
    return views


# -- hE: employers waiting for their prerequisites ---------------------------------------------


def waiting_for_prerequisites(cdg_code: str) -> list[Employer]:
    """The CDG's employers without a kit that a campaign leaves aside: a prerequisite is
    missing (« en attente de pièces »; never counted as failures). Read now, by name."""
    without_kit = employers_without_kit(cdg_code)
    missing = employers_missing_prerequisites(e.id for e in without_kit)
    return [e for e in without_kit if e.id in missing]
