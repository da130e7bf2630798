"""The engine with real Celery worker processes: on Redis, and on the embedded folder broker that
`make run` uses."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.engine.celery_app import live_workers
from service.engine.models import Job
from service.extensions import db
from tests.conftest import ARTIFACTS, make_app
from tests.test_returns import SIRET
from tests.workers import redis_config, wait_for, worker

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


def _jobs(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        rows = [(j.task, j.status) for j in db.session.scalars(select(Job).order_by(Job.id))]
        db.session.remove()
        return rows


def _outbox(app: Flask) -> list[Any]:
    folder = Path(app.extensions["psc.settings"].mail_url.removeprefix("file://"))
    return [message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


@pytest.fixture
def app_config() -> dict[str, str]:
    return redis_config()


def test_worker_on_redis_sends_the_mail_queued_by_a_request(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    # the request answered before anything was sent: the job waits for a worker
    assert _jobs(app) == [("psc.mail.send", "pending")]
    assert _outbox(app) == []
    log = ARTIFACTS / "workers" / f"redis-{app.extensions['psc.settings'].task_queue}.log"
    with worker(app, log):
        wait_for(lambda: _jobs(app) == [("psc.mail.send", "done")], what="mail job done")
        with app.app_context():
            assert [w.concurrency for w in live_workers()] == [1]
    mails = _outbox(app)
    assert len(mails) == 1 and kit["reference"] in mails[0]["Subject"]
    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    assert events[-1]["event"] == "email_sent"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_embedded_broker_needs_no_server(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    tmp_path: Path,
) -> None:
    """What `make run` uses: no REDIS_URL, a folder broker in the instance folder."""
    embedded = make_app(
        app.config["SQLALCHEMY_DATABASE_URI"],
        tmp_path,
        SECRET_KEY="test-secret-key",
        PUBLIC_URL="http://portail.test.local",
    )
    assert embedded.extensions["celery"].conf.broker_url == "filesystem://"
    with embedded.test_client() as c:
        assert c.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).status_code == 201
    queued = list((tmp_path / "instance" / "broker" / "queue").iterdir())
    assert len(queued) == 1  # the message waits in the folder
    with worker(embedded, ARTIFACTS / "workers" / "embedded.log"):
        wait_for(lambda: ("psc.mail.send", "done") in _jobs(embedded), what="mail job done")
    assert len(_outbox(embedded)) == 1
