"""The outbox's claim and failure bookkeeping under duplicated runs of one job (in-process)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from service.engine import outbox
from service.engine.models import Job
from service.errors import InvalidInput
from service.extensions import db

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


def _job(app: Flask) -> int:
    with app.app_context():
        job = outbox.enqueue("psc.test.noop", {}, send=False)
        db.session.commit()
        job_id = job.id
        db.session.remove()
        return job_id


@pytest.mark.parametrize(
    "error",
    [InvalidInput("Données refusées.", code="bad_data"), RuntimeError("SMTP 451")],
    ids=["permanent", "transient"],
)
def test_a_failed_run_never_undoes_a_duplicate_that_finished(app: Flask, error: Exception) -> None:
    """Run A fails and rolls back; before A writes its failure, a duplicate message's run B
    claims the job (now free) and finishes it. A must leave B's outcome alone: no `failed` over
    `done` (staff would retry a sent e-mail), no retry message for a done job."""
    job_id = _job(app)
    fired: list[bool] = []

    def duplicate_finishes(session: Session) -> None:
        if fired:
            return
        fired.append(True)
        with app.app_context():
            assert outbox.run_job(job_id, lambda job: None).ran
            db.session.remove()

    def fail(job: Job) -> None:
        event.listen(Session, "after_rollback", duplicate_finishes)
        raise error

    try:
        with app.app_context():
            outcome = outbox.run_job(job_id, fail)
            db.session.remove()
    finally:
        event.remove(Session, "after_rollback", duplicate_finishes)
    assert fired
    assert outcome.retry_in is None  # no retry message for a job done by another run
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None
        # both runs started (each start is counted before its work)
        assert (job.status, job.attempts, job.last_error) == ("done", 2, None)
        db.session.remove()


def test_a_job_that_kills_its_process_fails_after_max_attempts(app: Flask) -> None:
    """A run that never comes back (its process killed: the message is delivered again) still
    counts: past max_attempts the job is failed instead of looping for ever."""
    job_id = _job(app)
    with app.app_context():
        max_attempts = db.session.get(Job, job_id).max_attempts  # type: ignore[union-attr]
        db.session.remove()
    for _ in range(max_attempts):  # each start committed, then the process "dies"

        def die(job: Job) -> None:
            raise SystemExit  # not an Exception: nothing is recorded, as with a killed process

        with app.app_context():
            try:
                outbox.run_job(job_id, die)
            except SystemExit:
                db.session.rollback()
            db.session.remove()
    with app.app_context():
        outcome = outbox.run_job(job_id, lambda job: None)
        job = db.session.get(Job, job_id)
        assert job is not None
        assert not outcome.ok and job.status == "failed"
        assert "Interrompu" in (job.last_error or "")
        db.session.remove()


def test_a_failed_run_records_its_failure(app: Flask) -> None:
    job_id = _job(app)

    def fail(job: Job) -> None:
        raise RuntimeError("SMTP 451")

    with app.app_context():
        outcome = outbox.run_job(job_id, fail)
        assert outcome.ran and not outcome.ok and outcome.retry_in is not None
        job = db.session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.last_error == "RuntimeError: SMTP 451"
        assert job.next_attempt_at > job.created_at
        db.session.remove()
