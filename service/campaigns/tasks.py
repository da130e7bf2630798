"""The campaigns' task: one employer's kit, issued at most once whatever the retries."""

from __future__ import annotations

from sqlalchemy import select

from service.campaigns.domain import ISSUE_TASK, finish_if_last
from service.campaigns.models import Campaign
from service.engine.models import Job
from service.engine.outbox import job_task
from service.errors import NotFound
from service.extensions import db
from service.kits.actions import issue_reserved
from service.kits.models import Kit
from service.reference.models import Employer


@job_task(ISSUE_TASK)
def issue_campaign_kit(job: Job) -> None:
    """Issue the employer's kit under the reference reserved by the campaign, queue the « kit
    émis » e-mail, in the job's transaction (committed with the job done, or not at all).

    An employer that has received a kit since the campaign began (from this campaign or from
    anyone) gets none: the job is done and points to that kit.
    """
    campaign = db.session.get(Campaign, job.campaign_id) if job.campaign_id else None
    employer = db.session.get(Employer, int(job.payload.get("employer_id", 0)))
    if campaign is None or employer is None:
        raise NotFound("Employeur ou campagne introuvable.", code="unknown_employer")
    since = db.session.scalar(
        select(Kit)
        .where(Kit.employer_id == employer.id, Kit.issued_at >= campaign.started_at)
        .order_by(Kit.id.desc())
        .limit(1)
    )
    if since is not None:
        job.kit_id = since.id
    else:
        issued = issue_reserved(
            employer, reference=str(job.payload["reference"]), actor=campaign.started_by
        )
        job.kit_id = issued.kit.id
    finish_if_last(campaign.id, job.id)
