"""Background work on real Celery processes (Redis broker): an e-mail retried after an SMTP
failure, beat's reminders, archive copies run by a worker; and the same domain functions from
the API, the command line and beat's fixity sample."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.archive.models import ArchiveRecord
from service.audit.models import AuditEvent
from service.engine.models import Job
from service.extensions import db
from service.kits.models import Kit
from tests.conftest import (
    ARTIFACTS,
    auth,
    create_token,
    employer_payload,
    record_prerequisites,
    run_jobs,
)
from tests.pki import Pki
from tests.smtp import Inbox, smtp_server
from tests.test_archive import signed_kit
from tests.test_reference_api import assert_error
from tests.test_returns import SIRET
from tests.workers import celery_process, redis_config, wait_for, worker

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


OTHER = "21810001400016"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    smtp[0].messages.clear()
    smtp[0].refuse = smtp[0].refused = 0
    return smtp[0]


@pytest.fixture
def app_config(smtp: tuple[Inbox, int]) -> dict[str, str]:
    return {
        **redis_config(),
        "MAIL_URL": f"smtp://127.0.0.1:{smtp[1]}",
        # retries after 1 s, 2 s… instead of 30 s, 1 min…
        "TASK_RETRY_BASE_SECONDS": "1",
        # beat reminds every second instead of daily at 8:00
        "REMIND_SCHEDULE_SECONDS": "1",
    }


def _log(app: Flask, what: str) -> Path:
    return ARTIFACTS / "workers" / f"{what}-{app.extensions['psc.settings'].task_queue}.log"


def _jobs(app: Flask, task: str) -> list[Job]:
    with app.app_context():
        jobs = list(db.session.scalars(select(Job).where(Job.task == task).order_by(Job.id)))
        db.session.expunge_all()
        db.session.remove()
        return jobs


def _events(app: Flask, event: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))
        db.session.expunge_all()
        db.session.remove()
        return rows


def _backdate(app: Flask, days: int) -> None:
    with app.app_context():
        for kit in db.session.scalars(select(Kit)):
            kit.issued_at -= timedelta(days=days)
        db.session.commit()


@pytest.mark.parametrize("backend", ["postgres"])
def test_mail_task_is_retried_after_an_smtp_failure(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    inbox: Inbox,
) -> None:
    inbox.refuse = 1  # the first DATA gets a 451
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    with worker(app, _log(app, "mail-retry")):
        started = time.monotonic()
        wait_for(
            lambda: [j.status for j in _jobs(app, "psc.mail.send")] == ["done"],
            timeout=60,
            what="mail job done after a retry",
        )
        elapsed = time.monotonic() - started
    assert inbox.refused == 1
    assert len(inbox.messages) == 1 and kit["reference"] in inbox.messages[0]["Subject"]
    job = _jobs(app, "psc.mail.send")[0]
    assert job.attempts == 2 and job.last_error is None
    # the retry came after TASK_RETRY_BASE_SECONDS (1 s), not the default 30 s
    assert elapsed < 25, elapsed
    sent = _events(app, "email_sent")
    assert len(sent) == 1 and sent[0].kit_id == kit["id"]


@pytest.mark.parametrize("backend", ["postgres"])
def test_beat_reminds_once_within_after_days(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    inbox: Inbox,
    tmp_path: Path,
) -> None:
    client.post(
        "/api/v1/employers",
        json=employer_payload(
            employer["convention_id"], siret=OTHER, name="Aguts", email="mairie@aguts.fr"
        ),
        headers=staff,
    )
    record_prerequisites(client.application, OTHER)
    old = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    _backdate(app, 20)  # REMIND_AFTER_DAYS is 14: this kit waits for its signed pieces
    client.post(f"/api/v1/employers/{OTHER}/kits", headers=staff)  # issued today: no reminder
    worker_log = _log(app, "beat-worker")
    with (
        worker(app, worker_log),
        celery_process(
            app,
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / "celerybeat-schedule"),
            log=_log(app, "beat"),
        ),
    ):

        def reminders() -> list[Any]:
            return [m for m in inbox.messages if m["Subject"].startswith("Relance")]

        wait_for(reminders, timeout=60, what="the reminder e-mail")

        def ticks() -> int:
            text = worker_log.read_text(errors="replace")
            return sum(
                1
                for line in text.splitlines()
                if "psc.kits.remind_all" in line and "succeeded" in line
            )

        first = ticks()
        # beat keeps firing every second: three more runs remind nobody again
        wait_for(lambda: ticks() >= first + 3, timeout=60, what="three more beat runs")
    mails = reminders()
    assert len(mails) == 1 and mails[0]["To"] == "rh@mairie-albi.fr"
    assert old["reference"] in mails[0]["Subject"]
    events = _events(app, "reminder")
    assert [(e.kit_id, e.actor) for e in events] == [(old["id"], "system")]


@pytest.mark.parametrize("concurrency", [2])
def test_worker_archives_a_countersigned_kit(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    concurrency: int,
) -> None:
    kit = signed_kit(client, staff, pki)
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200 and r.json["status"] == "countersigned"
    with worker(app, _log(app, "archive"), concurrency=concurrency):
        wait_for(
            lambda: (
                client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
            ),
            timeout=90,
            what="kit archived by the worker",
        )
    jobs = _jobs(app, "psc.archive.copy")
    # one job per piece, then one manifest job written by the last piece: all done, once
    assert sorted(j.payload["kind"] for j in jobs) == sorted(
        ["special-conditions", "membership-agreement", "manifest"]
    )
    assert {j.status for j in jobs} == {"done"} and jobs[-1].payload["kind"] == "manifest"
    with app.app_context():
        kinds = sorted(db.session.scalars(select(ArchiveRecord.kind)))
    assert kinds == sorted(["special-conditions", "membership-agreement", "manifest", "proof"])
    assert len(_events(app, "kit_archived")) == 1


def test_reminders_from_the_api_and_the_command_never_twice(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    inbox: Inbox,
) -> None:
    url = "/api/v1/cdgs/81/reminders"
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    r = client.post(url, json={"after_days": 15}, headers=staff)
    assert r.status_code == 202 and r.json["queued"] == 0
    _backdate(app, 16)
    r = client.post(url, json={"after_days": 15}, headers=staff)
    assert r.status_code == 202 and r.json == {"queued": 1, "after_days": 15}
    # within the 15 days, neither the API nor the command reminds again
    assert client.post(url, json={"after_days": 15}, headers=staff).json["queued"] == 0
    result = app.test_cli_runner().invoke(args=["kits", "remind", "--after-days", "15"])
    assert result.exit_code == 0 and "0 relance envoyée" in result.output
    events = _events(app, "reminder")
    assert [(e.kit_id, e.actor) for e in events] == [(kit["id"], "staff:production@assureur.fr")]
    run_jobs(app)
    mails = [m for m in inbox.messages if m["Subject"].startswith("Relance")]
    assert len(mails) == 1 and kit["reference"] in mails[0]["Subject"]
    # another CDG has nothing to remind; bad input and other roles are refused
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    assert client.post("/api/v1/cdgs/82/reminders", headers=staff).json["queued"] == 0
    assert_error(
        client.post("/api/v1/cdgs/99/reminders", json={}, headers=staff), 404, "unknown_cdg"
    )
    assert_error(client.post(url, json={"after_days": -1}, headers=staff), 422, "invalid_field")
    assert_error(client.post(url, json={"days": 3}, headers=staff), 422, "invalid_field")
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    assert client.post(url, json={"after_days": 15}, headers=cdg).status_code == 403
    result = app.test_cli_runner().invoke(
        args=["kits", "remind", "--after-days", "1", "--cdg", "99"]
    )
    assert result.exit_code == 1 and "CDG inconnu" in result.output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_fixity_sample_records_a_changed_copy_in_the_audit_trail(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    tmp_path: Path,
) -> None:
    kit = signed_kit(client, staff, pki)
    client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    run_jobs(app)
    fixity = app.extensions["celery"].tasks["psc.archive.fixity"]
    assert fixity(sample=10) == 0 and _events(app, "archive_fixity_failed") == []
    with app.app_context():
        rec = db.session.scalar(select(ArchiveRecord).where(ArchiveRecord.kind == "manifest"))
        assert rec is not None
        key = rec.key
    copy = tmp_path / "instance" / "archive" / key
    copy.write_bytes(copy.read_bytes() + b" ")
    assert fixity(sample=10) == 1
    events = _events(app, "archive_fixity_failed")
    assert len(events) == 1 and events[0].kit_id == kit["id"]
    assert events[0].details["key"] == key and "empreinte" in events[0].details["problem"]
    r = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    assert r[-1]["event"] == "archive_fixity_failed"
