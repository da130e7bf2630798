"""E-mails leave through the outbox: written in the caller's transaction, sent by a worker after
the commit (retried with backoff), never inside a request."""

from __future__ import annotations

from collections.abc import Sequence

from service.engine.models import Job
from service.engine.outbox import enqueue, enqueue_many

SEND_TASK = "psc.mail.send"
#: an SMTP server down for a day still gets the message: 30 s, 1 min, … then hourly
MAIL_MAX_ATTEMPTS = 30
#: where a message's secret stands in its stored body (put back by the send task only)
SECRET_MARK = "⟦secret⟧"


def _payload(to: str, subject: str, body: str, secret: str | None) -> dict[str, str]:
    payload = {"to": to, "subject": subject, "body": body}
    if secret:
        payload["body"] = body.replace(secret, SECRET_MARK)
        payload["secret"] = secret
    return payload


def queue_mail(
    to: str, subject: str, body: str, *, kit_id: int | None = None, secret: str | None = None
) -> Job:
    """Add the e-mail to the current transaction; the caller commits.

    `secret` is a one-time code or link token written in `body`: the stored body holds a mark
    in its place and the payload keeps it under its own key, which the send task blanks once
    the message is sent (the outbox keeps no usable secret)."""
    return enqueue(
        SEND_TASK,
        _payload(to, subject, body, secret),
        kit_id=kit_id,
        max_attempts=MAIL_MAX_ATTEMPTS,
    )


def queue_mails(messages: Sequence[tuple[str, str, str, str | None]]) -> list[int]:
    """Many e-mails (to, subject, body, secret) added to the current transaction in bulk, sent
    by the workers through fan-out jobs after the commit (`outbox.enqueue_many`): their jobs'
    ids. Each secret is kept apart from its body as `queue_mail` does."""
    return enqueue_many(
        SEND_TASK,
        [_payload(to, subject, body, secret) for to, subject, body, secret in messages],
        max_attempts=MAIL_MAX_ATTEMPTS,
    )


def mail_body(payload: dict[str, str]) -> str:
    """The body as sent: its secret (if still kept) back in place."""
    body = payload["body"]
    if payload.get("secret"):
        body = body.replace(SECRET_MARK, payload["secret"])
    return body
