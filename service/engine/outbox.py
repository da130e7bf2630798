"""Writing jobs in the caller's transaction, handing them to Celery after the commit, and running
them once: claim, work, mark done, in one transaction; failures retried with backoff.

Domain packages declare their tasks with `job_task` and write jobs with `enqueue`; nothing here
knows what a job does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from flask import current_app
from sqlalchemy import event, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from service.config import settings
from service.engine.models import Job
from service.errors import NotFound, ServiceError
from service.extensions import db
from service.timeutil import utcnow

log = logging.getLogger(__name__)

_PENDING_KEY = "psc.jobs_to_send"

#: what a job's task does with its row, inside the claiming transaction (no commit)
Handler = Callable[[Job], None]
#: task name → handler, filled by `job_task`
HANDLERS: dict[str, Handler] = {}


def enqueue(
    task: str,
    payload: dict[str, Any] | None = None,
    *,
    kit_id: int | None = None,
    campaign_id: int | None = None,
    max_attempts: int = 8,
    send: bool = True,
) -> Job:
    """Add a job to the current transaction; its task is sent to the broker once it commits.

    `send=False`: the job is only written (a caller runs it itself, or beat's sweep sends it).
    """
    job = Job(
        task=task,
        payload=payload or {},
        kit_id=kit_id,
        campaign_id=campaign_id,
        max_attempts=max_attempts,
        status="pending",
        attempts=0,
        created_at=utcnow(),
        next_attempt_at=utcnow(),
    )
    db.session.add(job)
    if send:
        db.session.info.setdefault(_PENDING_KEY, []).append((job, task))
    return job


# -- many jobs at once ---------------------------------------------------------------------------

#: the task that hands a chunk of jobs to the broker
FANOUT_TASK = "psc.engine.fanout"
#: jobs per fan-out job (one broker message from the caller for each)
FANOUT_CHUNK = 500

_JOBS_PG = text(
    "INSERT INTO job (task, payload, status, attempts, max_attempts, created_at, "
    "next_attempt_at) "
    "SELECT :task, CAST(p AS json), 'pending', 0, :max_attempts, :now, :now "
    "FROM unnest(CAST(:payloads AS text[])) WITH ORDINALITY AS t(p, n) ORDER BY n "
    "RETURNING id"
)


def enqueue_many(
    task: str, payloads: Sequence[dict[str, Any]], *, max_attempts: int = 8
) -> list[int]:
    """Add many jobs of one task to the current transaction with one bulk insert (no ORM
    object), and return their ids in the payloads' order.

    After the commit the broker gets one message for a single job, else one per `FANOUT_CHUNK`
    jobs: a fan-out job whose task (a worker) sends the jobs' messages. Nothing is lost when a
    message is: a fan-out job left pending is sent again by the sweep, and so is any job never
    handed to the broker (both are ordinary pending jobs).
    """
    if not payloads:
        return []
    now = utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        # one statement whatever the count: the payloads as an array unnested by PostgreSQL
        ids = list(
            db.session.scalars(
                _JOBS_PG,
                {
                    "task": task,
                    "payloads": [json.dumps(p, ensure_ascii=False) for p in payloads],
                    "max_attempts": max_attempts,
                    "now": now,
                },
            )
        )
    else:
        ids = list(
            db.session.scalars(
                insert(Job).returning(Job.id, sort_by_parameter_order=True),
                [
                    {
                        "task": task,
                        "payload": payload,
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": max_attempts,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                    for payload in payloads
                ],
            )
        )
    if len(ids) == 1:
        db.session.info.setdefault(_PENDING_KEY, []).append((ids[0], task))
    else:
        for start in range(0, len(ids), FANOUT_CHUNK):
            enqueue(
                FANOUT_TASK,
                {"jobs": ids[start : start + FANOUT_CHUNK]},
                max_attempts=max_attempts,
            )
    return ids


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """The committed jobs go to the broker. No SQL may run here: ids come from the identity
    keys, the task names were kept at `enqueue`."""
    jobs = session.info.pop(_PENDING_KEY, None)
    if jobs:
        pairs = []
        for job, task in jobs:
            job_id = job if isinstance(job, int) else (inspect(job).identity or (None,))[0]
            if job_id is not None:
                pairs.append((job_id, task))
        send(pairs)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def send(jobs: Iterable[tuple[int, str]]) -> int:
    """Hand jobs to the broker; a broker that does not answer leaves them to beat's sweep.

    Never raises: the business action is committed already.
    """
    celery = current_app.extensions["celery"]
    pairs = list(jobs)
    sent: list[int] = []
    try:
        with celery.producer_or_acquire() as producer:
            for job_id, task in pairs:
                celery.send_task(task, args=[job_id], producer=producer)
                sent.append(job_id)
    except Exception:  # broker down: the jobs stay pending, the sweep sends them again
        log.warning("broker unavailable: %d job(s) left to the sweep", len(pairs) - len(sent))
    if sent:
        _mark_enqueued(sent)
    return len(sent)


def _mark_enqueued(job_ids: list[int]) -> None:
    """Note when jobs were handed over, in a connection of its own (the caller's transaction is
    over or belongs to the caller)."""
    try:
        with db.engine.begin() as conn:
            conn.execute(update(Job).where(Job.id.in_(job_ids)).values(enqueued_at=utcnow()))
    except Exception:  # only the sweep's timing depends on it
        log.warning("could not note %d enqueued job(s)", len(job_ids), exc_info=True)


def backoff(attempts: int, *, base: float | None = None, cap: float = 3600.0) -> float:
    """30 s, 60 s, 2 min, … capped at an hour (TASK_RETRY_BASE_SECONDS, 30 by default)."""
    if base is None:
        base = settings().task_retry_base_seconds
    return min(cap, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Outcome:
    """What running a job did: `ran` False when another run had it already (done or claimed)."""

    ran: bool
    ok: bool = True
    retry_in: float | None = None
    error: str | None = None


def run_job(job_id: int, handler: Handler) -> Outcome:
    """Count the attempt, claim the job, run `handler`, mark it done, commit: all or nothing.

    The attempt is counted and committed first, so that a job whose run kills its process (out of
    memory, a crash in a native library: the message comes back to another worker) is `failed`
    after `max_attempts` instead of looping for ever. The claim is then an UPDATE of the pending
    row: on PostgreSQL it locks the row until the commit, so a duplicate of the same job waits,
    then finds it done; on SQLite the write lock does the same. A `ServiceError` (bad data)
    fails the job at once; anything else is retried with backoff up to `max_attempts`, then the
    job is `failed` (staff may retry it).
    """
    started = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "pending")
        .values(attempts=Job.attempts + 1, started_at=utcnow())
        .returning(Job.attempts, Job.max_attempts)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if started is None:
        db.session.rollback()
        return Outcome(ran=False)
    attempts, max_attempts = started
    if attempts > max_attempts:  # the earlier runs never came back: their process died
        error = f"Interrompu {max_attempts} fois (processus arrêté pendant le travail)."
        db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "pending")
            .values(status="failed", attempts=max_attempts, last_error=error)
        )
        db.session.commit()
        return Outcome(ran=True, ok=False, error=error)
    db.session.commit()
    job = db.session.scalars(
        update(Job)
        .where(Job.id == job_id, Job.status == "pending", Job.attempts == attempts)
        .values(started_at=utcnow())
        .returning(Job)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if job is None:  # a duplicate started meanwhile: it runs the job
        db.session.rollback()
        return Outcome(ran=False)
    try:
        handler(job)
        job.status, job.done_at, job.last_error = "done", utcnow(), None
        db.session.commit()
        return Outcome(ran=True)
    except Exception as exc:
        db.session.rollback()
        permanent = isinstance(exc, ServiceError)
        if not permanent:
            log.warning("job %s (%s) failed", job_id, type(exc).__name__, exc_info=True)
        return _failed(
            job_id, exc, attempts=attempts, max_attempts=max_attempts, permanent=permanent
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ServiceError):
        return exc.message[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _failed(
    job_id: int, exc: BaseException, *, attempts: int, max_attempts: int, permanent: bool
) -> Outcome:
    """Record this run's failure (`attempts`: the count this run committed when it started).

    The claim was rolled back with the work, so a duplicate message may have started the job
    meanwhile, and finished it or recorded its own failure: the UPDATE only applies while the
    job is still pending at this run's count (PostgreSQL waits for a duplicate holding the row;
    SQLite's write lock does the same), else this run's outcome is dropped and no retry is sent.
    """
    error = _describe(exc)
    values: dict[str, Any] = {"last_error": error}
    retry_in = None
    if permanent or attempts >= max_attempts:
        values["status"] = "failed"
    else:
        retry_in = backoff(attempts)
        values["next_attempt_at"] = utcnow() + timedelta(seconds=retry_in)
        # the retry message is sent now with a countdown: the sweep waits for it first
        values["enqueued_at"] = values["next_attempt_at"]
    recorded = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "pending", Job.attempts == attempts)
        .values(**values)
    ).rowcount
    db.session.commit()
    if not recorded:  # another run had the job meanwhile: its outcome stands
        return Outcome(ran=True, ok=False, error=error)
    return Outcome(ran=True, ok=False, retry_in=retry_in, error=error)


def job_task(name: str) -> Callable[[Handler], Task]:
    """Declare the Celery task `name` that runs jobs with `handler`:

        @job_task("psc.mail.send")
        def send_mail_job(job: Job) -> None: ...

    Acknowledged late, so a worker killed midway leaves the message to another.
    """

    def wrap(handler: Handler) -> Task:
        @shared_task(name=name, bind=True, acks_late=True, ignore_result=True)
        def task(self: Task, job_id: int) -> None:
            outcome = run_job(job_id, handler)
            if outcome.retry_in is not None:
                self.apply_async(args=[job_id], countdown=outcome.retry_in)

        HANDLERS[name] = handler
        return task

    return wrap


def run_here(job_id: int) -> Outcome:
    """Run one job in this process through its task's handler (the CLI without workers)."""
    job = db.session.get(Job, job_id)
    if job is None:
        return Outcome(ran=False)
    handler = HANDLERS[job.task]
    db.session.rollback()
    return run_job(job_id, handler)


def run_due(*, limit: int | None = None) -> tuple[int, int]:
    """Run the due pending jobs in this process, oldest first: (done, failed or retried)."""
    query = (
        select(Job.id)
        .where(Job.status == "pending", Job.next_attempt_at <= utcnow())
        .order_by(Job.id)
    )
    ids = list(db.session.scalars(query.limit(limit) if limit else query))
    db.session.rollback()
    done = failed = 0
    for job_id in ids:
        outcome = run_here(job_id)
        if outcome.ran:
            done += outcome.ok
            failed += not outcome.ok
    return done, failed


def sweep(*, stale_after: timedelta, limit: int = 1000) -> int:
    """Send again the pending jobs whose message was lost (never sent, or sent long ago and
    still pending: a worker killed before acknowledging, a broker restarted)."""
    now = utcnow()
    rows = db.session.execute(
        select(Job.id, Job.task)
        .where(
            Job.status == "pending",
            Job.next_attempt_at <= now,
            (Job.enqueued_at.is_(None) & (Job.created_at <= now - stale_after))
            | (Job.enqueued_at <= now - stale_after),
        )
        .order_by(Job.id)
        .limit(limit)
    ).all()
    db.session.rollback()
    return send([(row.id, row.task) for row in rows])


#: failed jobs put back per UPDATE by `retry_many`
RETRY_CHUNK = 1000


def retry_many(pairs: list[tuple[int, str]]) -> None:
    """Failed jobs, given as (id, task), pending again with fresh attempts, in bulk (no Job
    object loaded), sent after the caller's commit like any other job."""
    now = utcnow()
    for start in range(0, len(pairs), RETRY_CHUNK):
        ids = [job_id for job_id, _ in pairs[start : start + RETRY_CHUNK]]
        db.session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=now, enqueued_at=None)
            .execution_options(synchronize_session=False)
        )
    db.session.info.setdefault(_PENDING_KEY, []).extend(pairs)


def retry(job_id: int) -> Job:
    """A failed job, pending again with a fresh set of attempts, sent after the commit."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound("Tâche introuvable.", code="unknown_job")
    if job.status == "failed":
        job.status, job.attempts, job.next_attempt_at = "pending", 0, utcnow()
        job.enqueued_at = None
        db.session.info.setdefault(_PENDING_KEY, []).append((job, job.task))
    return job


@job_task(FANOUT_TASK)
def send_fanout(job: Job) -> None:
    """Hand the chunk's jobs still waiting for the broker to it, and note when, in the fan-out
    job's transaction. A broker down raises: the fan-out is retried with backoff (a message sent
    twice finds its job done the second time)."""
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
