"""Many jobs at once (`outbox.enqueue_many`): one bulk insert in the caller's transaction, and
after the commit one broker message per chunk of jobs (a fan-out job whose task hands the chunk
to the broker), on real PostgreSQL and SQLite with a real Redis broker."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from service import labels
from service.engine import outbox
from service.engine.models import Job
from service.extensions import db
from service.timeutil import utcnow
from tests.workers import redis_config

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


TASK = "psc.test.noop"


@pytest.fixture
def app_config() -> dict[str, str]:
    return redis_config()


def broker_messages(app: Flask) -> int:
    """The messages waiting on the app's queue, taken off it."""
    celery = app.extensions["celery"]
    queue = app.extensions["psc.settings"].task_queue
    with celery.connection_for_write() as conn:
        return int(conn.default_channel.queue_purge(queue) or 0)


def all_jobs(app: Flask, task: str) -> list[Job]:
    with app.app_context():
        rows = list(db.session.scalars(select(Job).where(Job.task == task).order_by(Job.id)))
        db.session.expunge_all()
        db.session.remove()
        return rows


def enqueue_many(app: Flask, payloads: list[dict[str, Any]]) -> list[int]:
    with app.app_context():
        ids = outbox.enqueue_many(TASK, payloads, max_attempts=5)
        db.session.commit()
        db.session.remove()
        return ids


def test_enqueue_many_writes_the_jobs_and_hands_the_broker_one_message_per_chunk(
    app: Flask,
) -> None:
    payloads = [{"n": n, "to": f"agent{n}@exemple.fr"} for n in range(1_201)]
    ids = enqueue_many(app, payloads)
    assert len(ids) == len(set(ids)) == 1_201
    jobs = all_jobs(app, TASK)
    assert [j.id for j in jobs] == sorted(ids)
    by_id = {j.id: j for j in jobs}
    assert [by_id[i].payload for i in ids] == payloads  # ids in the payloads' order
    assert {(j.status, j.attempts, j.max_attempts) for j in jobs} == {("pending", 0, 5)}
    assert all(j.enqueued_at is None for j in jobs)  # left to the fan-out jobs
    fanouts = all_jobs(app, outbox.FANOUT_TASK)
    assert [j.payload["jobs"] for j in fanouts] == [ids[:500], ids[500:1000], ids[1000:]]
    assert all(j.enqueued_at is not None and j.max_attempts == 5 for j in fanouts)
    assert broker_messages(app) == 3  # not 1 201
    assert labels.job_kind(outbox.FANOUT_TASK) == "Envoi groupé de tâches"  # staff's tasks page


def test_enqueue_many_of_one_job_sends_it_without_a_fanout(app: Flask) -> None:
    (job_id,) = enqueue_many(app, [{"to": "seul@exemple.fr"}])
    (job,) = all_jobs(app, TASK)
    assert job.id == job_id and job.enqueued_at is not None
    assert all_jobs(app, outbox.FANOUT_TASK) == []
    assert broker_messages(app) == 1


def test_enqueue_many_rolled_back_writes_and_sends_nothing(app: Flask) -> None:
    with app.app_context():
        outbox.enqueue_many(TASK, [{"n": n} for n in range(3)])
        db.session.rollback()
        assert db.session.scalar(select(func.count(Job.id))) == 0
        db.session.remove()
    assert broker_messages(app) == 0
    with app.app_context():
        assert outbox.enqueue_many(TASK, []) == []
        db.session.commit()
        db.session.remove()
    assert all_jobs(app, TASK) == [] and broker_messages(app) == 0


def test_fanout_hands_only_the_jobs_still_waiting_to_the_broker(app: Flask) -> None:
    ids = enqueue_many(app, [{"n": n} for n in range(3)])
    assert broker_messages(app) == 1  # the fan-out's message, taken off: a worker runs it here
    (fanout,) = all_jobs(app, outbox.FANOUT_TASK)
    with app.app_context():  # one already done (a duplicate message), one already handed over
        db.session.execute(update(Job).where(Job.id == ids[0]).values(status="done"))
        db.session.execute(update(Job).where(Job.id == ids[1]).values(enqueued_at=utcnow()))
        db.session.commit()
        assert outbox.run_here(fanout.id).ok
        db.session.remove()
    assert broker_messages(app) == 1  # only the third job
    third = next(j for j in all_jobs(app, TASK) if j.id == ids[2])
    assert third.enqueued_at is not None
    assert all_jobs(app, outbox.FANOUT_TASK)[0].status == "done"
    with app.app_context():  # its message delivered twice: nothing is sent again
        db.session.execute(update(Job).where(Job.id == fanout.id).values(status="pending"))
        db.session.commit()
        assert outbox.run_here(fanout.id).ok
        db.session.remove()
    assert broker_messages(app) == 0
