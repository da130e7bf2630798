"""The worker's side of e-mails: send one queued message, record it in the audit trail."""

from __future__ import annotations

from service.audit.domain import record
from service.config import settings
from service.engine.models import Job
from service.engine.outbox import job_task
from service.mail import outbox
from service.mail.queue import SEND_TASK, mail_body


@job_task(SEND_TASK)
def send_mail(job: Job) -> None:
    """Send, then record `email_sent` in the same transaction as the job's completion. An SMTP
    failure raises: the job is retried with backoff (its last error is on the queue page).

    A message's secret (a one-time code, a link token) is blanked in the same transaction: the
    job row keeps none once sent, and still has it for a retry while unsent."""
    payload = job.payload
    message = outbox.build(payload["to"], payload["subject"], mail_body(payload))
    message["X-PSC-Job"] = str(job.id)
    outbox.send(settings().mail_url, message)
    record(
        "email_sent",
        actor="system",
        kit_id=job.kit_id,
        details={"to": payload["to"], "subject": payload["subject"], "job": job.id},
    )
    if "secret" in payload:
        job.payload = {**payload, "secret": ""}
