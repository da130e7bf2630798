"""The archive's tasks: one copy per job (`psc.archive.copy`), and beat's fixity sample."""

from __future__ import annotations

from celery import shared_task

from service.archive.domain import COPY_TASK, archive_copy, archive_policy, check_fixity
from service.backends import archive_store, document_store
from service.config import settings
from service.engine.models import Job
from service.engine.outbox import job_task
from service.extensions import db


@job_task(COPY_TASK)
def copy_to_archive(job: Job) -> None:
    """Upload, read back, record: a storage failure raises and the job is retried with backoff
    (a copy already there with the right SHA-256 is only recorded: no duplicate)."""
    archive_copy(job, documents=document_store(), archive=archive_store(), policy=archive_policy())


@shared_task(name="psc.archive.fixity", ignore_result=True)
def fixity(sample: int | None = None) -> int:
    """Beat, daily: `sample` archived copies re-read and SHA-256 checked; the faults found."""
    report = check_fixity(
        archive=archive_store(),
        sample=settings().fixity_sample if sample is None else sample,
    )
    db.session.commit()
    return len(report.faults)
