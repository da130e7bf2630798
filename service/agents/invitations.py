"""Sending the confirmation e-mail again to the employer's agents who have not used their link.

Built for volume (10 000 agents in a few seconds): the new links and the e-mails' jobs are
written with bulk inserts in the caller's transaction, the links they replace expire at once,
and the request hands the broker only one message per `FANOUT_CHUNK` e-mails: a "fan-out" job
whose task (a worker) sends the e-mails' messages. Nothing is lost when a message is: a fan-out
job left pending is sent again by the outbox's sweep, and so is any e-mail job never handed to
the broker (both are ordinary pending jobs).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import exists, insert, select, text, update

from service.agents.models import ActivationLink, Membership
from service.agents.notify import ACTIVATION_DAYS, activation_token_hash
from service.config import settings
from service.engine.models import Job
from service.engine.outbox import enqueue, job_task
from service.errors import NotFound
from service.extensions import db
from service.mail.queue import MAIL_MAX_ATTEMPTS, SEND_TASK
from service.reference.models import Employer
from service.timeutil import utcnow
from service.wording import employer_designation

#: the task that hands a chunk of e-mail jobs to the broker
FANOUT_TASK = "psc.agents.send_invitations"
#: e-mails per fan-out job (one broker message from the request for each)
FANOUT_CHUNK = 500
#: rows per UPDATE … IN (…) (SQLite's and PostgreSQL's parameter limits are far above)
ID_CHUNK = 1000
SUBJECT = "Votre adhésion à la prévoyance de votre employeur"


@dataclass(frozen=True)
class Resent:
    """What a re-send did: e-mails queued, and the ids given that were not eligible."""

    queued: int
    skipped: list[int]


def confirmation_body(
    *, first_name: str, last_name: str, reference: str, who: str, token: str
) -> str:
    """The confirmation e-mail's text (the same as `notify.membership_confirmed` writes)."""
    return (
        f"Bonjour {first_name} {last_name},\n\n"
        f"Votre adhésion {reference} au contrat de prévoyance proposé par "
        f"{who} est enregistrée.\n\n"
        "Créez votre espace personnel pour consulter votre adhésion, télécharger votre "
        "certificat et désigner vos bénéficiaires :\n"
        f"{settings().public_url}/adherent/activation?jeton={token}\n\n"
        f"Ce lien ne sert qu'une fois et expire dans {ACTIVATION_DAYS} jours.\n"
    )


def _chunks(values: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def resend_invitations(employer: Employer, *, ids: list[int] | None = None) -> Resent:
    """Queue the confirmation e-mail, with a new link, for each of the employer's `invited`
    memberships whose link was never used (or only those of `ids`). The caller commits.

    404 `unknown_membership` when an id is not one of the employer's memberships; the ids that
    are not eligible (active, left, link used) are returned as skipped.
    """
    eligible = (
        select(
            Membership.id,
            Membership.email,
            Membership.first_name,
            Membership.last_name,
            Membership.reference,
        )
        .where(
            Membership.employer_id == employer.id,
            Membership.state == "invited",
            ~exists().where(
                ActivationLink.membership_id == Membership.id, ActivationLink.used_at.is_not(None)
            ),
        )
        .order_by(Membership.id)
    )
    skipped: list[int] = []
    if ids is not None:
        wanted = sorted(set(ids))
        known: set[int] = set()
        for chunk in _chunks(wanted, ID_CHUNK):
            known.update(
                db.session.scalars(
                    select(Membership.id).where(
                        Membership.employer_id == employer.id, Membership.id.in_(chunk)
                    )
                )
            )
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotFound(
                f"Adhésion introuvable chez cet employeur : n° {missing[0]}.",
                code="unknown_membership",
            )
        rows = []
        for chunk in _chunks(wanted, ID_CHUNK):
            rows.extend(db.session.execute(eligible.where(Membership.id.in_(chunk))).all())
        found = {r.id for r in rows}
        skipped = [i for i in wanted if i not in found]
    else:
        rows = list(db.session.execute(eligible).all())
    if not rows:
        return Resent(0, skipped)

    now = utcnow()
    member_ids = [r.id for r in rows]
    # the links sent before stop working: only the newest one opens the account
    for chunk in _chunks(member_ids, ID_CHUNK):
        db.session.execute(
            update(ActivationLink)
            .where(
                ActivationLink.membership_id.in_(chunk),
                ActivationLink.used_at.is_(None),
                ActivationLink.expires_at > now,
            )
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )
    who = employer_designation(employer).the
    expires = now + timedelta(days=ACTIVATION_DAYS)
    hashes, bodies = [], []
    for row in rows:
        token = secrets.token_urlsafe(32)
        hashes.append(activation_token_hash(token))
        bodies.append(
            confirmation_body(
                first_name=row.first_name,
                last_name=row.last_name,
                reference=row.reference,
                who=who,
                token=token,
            )
        )
    emails = [row.email for row in rows]
    payloads = [
        {"to": email, "subject": SUBJECT, "body": body}
        for email, body in zip(emails, bodies, strict=True)
    ]
    if db.session.get_bind().dialect.name == "postgresql":
        job_ids = _insert_postgresql(member_ids, emails, hashes, payloads, now, expires)
    else:
        job_ids = _insert_rows(member_ids, emails, hashes, payloads, now, expires)
    for chunk in _chunks(job_ids, FANOUT_CHUNK):
        enqueue(FANOUT_TASK, {"jobs": list(chunk)}, max_attempts=MAIL_MAX_ATTEMPTS)
    return Resent(len(rows), skipped)


def _insert_rows(
    member_ids: list[int],
    emails: list[str],
    hashes: list[str],
    payloads: list[dict[str, str]],
    now: datetime,
    expires: datetime,
) -> list[int]:
    """The links and the e-mails' jobs, with executemany (SQLite): the jobs' ids."""
    db.session.execute(
        insert(ActivationLink),
        [
            {
                "token_hash": token_hash,
                "membership_id": membership_id,
                "email": email,
                "expires_at": expires,
                "created_at": now,
            }
            for membership_id, email, token_hash in zip(member_ids, emails, hashes, strict=True)
        ],
    )
    return list(
        db.session.scalars(
            insert(Job).returning(Job.id),
            [
                {
                    "task": SEND_TASK,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "max_attempts": MAIL_MAX_ATTEMPTS,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for payload in payloads
            ],
        )
    )


_LINKS_PG = text(
    "INSERT INTO activation_link (token_hash, membership_id, email, expires_at, created_at) "
    "SELECT h, m, e, :expires, :now "
    "FROM unnest(CAST(:hashes AS varchar[]), CAST(:members AS integer[]), "
    "CAST(:emails AS varchar[])) AS t(h, m, e)"
)
_JOBS_PG = text(
    "INSERT INTO job (task, payload, status, attempts, max_attempts, created_at, "
    "next_attempt_at) "
    "SELECT :task, CAST(p AS json), 'pending', 0, :max_attempts, :now, :now "
    "FROM unnest(CAST(:payloads AS text[])) AS t(p) RETURNING id"
)


def _insert_postgresql(
    member_ids: list[int],
    emails: list[str],
    hashes: list[str],
    payloads: list[dict[str, str]],
    now: datetime,
    expires: datetime,
) -> list[int]:
    """The same rows in two statements, as arrays unnested by PostgreSQL: one round trip each,
    whatever the count (executemany would send and parse one statement per 1 000 rows)."""
    db.session.execute(
        _LINKS_PG,
        {"hashes": hashes, "members": member_ids, "emails": emails, "expires": expires, "now": now},
    )
    return list(
        db.session.scalars(
            _JOBS_PG,
            {
                "task": SEND_TASK,
                "payloads": [json.dumps(p, ensure_ascii=False) for p in payloads],
                "max_attempts": MAIL_MAX_ATTEMPTS,
                "now": now,
            },
        )
    )


@job_task(FANOUT_TASK)
def send_invitation_jobs(job: Job) -> None:
    """Hand the chunk's e-mail jobs still waiting for the broker to it, and note when, in the
    fan-out job's transaction. A broker down raises: the fan-out is retried with backoff (a
    message sent twice finds its job done the second time)."""
    ids = [int(i) for i in job.payload.get("jobs", [])]
    waiting = list(
        db.session.execute(
            select(Job.id, Job.task).where(
                Job.id.in_(ids), Job.status == "pending", Job.enqueued_at.is_(None)
            )
        ).all()
    )
    if not waiting:
        return
    # noted first, in this transaction: a broker down rolls it back with the error
    db.session.execute(
        update(Job)
        .where(Job.id.in_([job_id for job_id, _ in waiting]))
        .values(enqueued_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    celery = current_app.extensions["celery"]
    with celery.producer_or_acquire() as producer:
        for job_id, task in waiting:
            celery.send_task(task, args=[job_id], producer=producer)
