"""E-mails leave through the outbox: written in the caller's transaction, sent by a worker after
the commit (retried with backoff), never inside a request."""

from __future__ import annotations

from service.engine.models import Job
from service.engine.outbox import enqueue

SEND_TASK = "psc.mail.send"
#: an SMTP server down for a day still gets the message: 30 s, 1 min, … then hourly
MAIL_MAX_ATTEMPTS = 30


def queue_mail(to: str, subject: str, body: str, *, kit_id: int | None = None) -> Job:
    """Add the e-mail to the current transaction; the caller commits."""
    return enqueue(
        SEND_TASK,
        {"to": to, "subject": subject, "body": body},
        kit_id=kit_id,
        max_attempts=MAIL_MAX_ATTEMPTS,
    )
