"""E-mails leave through the outbox: written in the caller's transaction, sent by a worker after
the commit (retried with backoff), never inside a request."""

from __future__ import annotations

from collections.abc import Sequence

from service.engine.models import Job
from service.engine.outbox import enqueue, enqueue_many

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


def queue_mails(messages: Sequence[tuple[str, str, str]]) -> list[int]:
    """Many e-mails (to, subject, body) added to the current transaction in bulk, sent by the
    workers through fan-out jobs after the commit (`outbox.enqueue_many`): their jobs' ids."""
    return enqueue_many(
        SEND_TASK,
        [{"to": to, "subject": subject, "body": body} for to, subject, body in messages],
        max_attempts=MAIL_MAX_ATTEMPTS,
    )
