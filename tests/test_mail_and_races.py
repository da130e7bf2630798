"""E-mails through a real SMTP server on loopback, reminders, and racing requests on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.engine.models import Job
from service.extensions import db
from service.kits.models import Kit
from service.mail.queue import queue_mail
from service.timeutil import utcnow
from tests.conftest import auth, run_jobs
from tests.pki import Pki, sign_pdf
from tests.smtp import Inbox, smtp_server
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def app_config(smtp: tuple[Inbox, int]) -> dict[str, str]:
    return {"MAIL_URL": f"smtp://127.0.0.1:{smtp[1]}"}


def test_kit_issued_mail_goes_through_smtp_without_the_code(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    inbox.messages.clear()
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    assert inbox.messages == []  # queued in the request's transaction, sent by a worker
    assert run_jobs(app) == (1, 0)
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "rh@mairie-albi.fr"
    assert kit["reference"] in message["Subject"]
    body = message.get_payload(decode=True).decode()
    assert "http://portail.test.local/portail" in body
    assert kit["access_code"] not in body and kit["access_code"].replace("-", "") not in body


@pytest.mark.postgres
def test_remind_after_days(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    smtp: tuple[Inbox, int],
) -> None:
    inbox, _ = smtp
    client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    run_jobs(app)
    inbox.messages.clear()
    runner = app.test_cli_runner()
    output = runner.invoke(args=["kits", "remind", "--after-days", "15"]).output
    assert "0 relance envoyée" in output
    with app.app_context():
        for kit in db.session.scalars(select(Kit)):
            kit.issued_at -= timedelta(days=16)
        db.session.commit()
    result = runner.invoke(args=["kits", "remind", "--after-days", "15"])
    assert "1 relance envoyée" in result.output
    run_jobs(app)
    assert len(inbox.messages) == 1 and "Relance" in inbox.messages[0]["Subject"]


def test_mail_failure_leaves_the_job_to_retry(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    app.extensions["psc.settings"] = type(app.extensions["psc.settings"])(
        **{**app.extensions["psc.settings"].__dict__, "mail_url": "smtp://127.0.0.1:9"}
    )
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201
    assert run_jobs(app) == (0, 1)
    with app.app_context():
        job = db.session.scalars(select(Job)).one()
        assert (job.status, job.attempts) == ("pending", 1)
        assert "ConnectionRefusedError" in (job.last_error or "")
        assert job.next_attempt_at > utcnow()
    events = client.get(f"/api/v1/kits/{r.json['id']}/events", headers=staff).json["items"]
    assert "email_sent" not in [e["event"] for e in events]


def test_mail_secret_kept_for_a_retry_then_blanked_once_sent(
    app: Flask, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    inbox.messages.clear()
    secret = "Tk-9f3a7c2e1b"
    settings = app.extensions["psc.settings"]
    app.extensions["psc.settings"] = type(settings)(
        **{**settings.__dict__, "mail_url": "smtp://127.0.0.1:9"}
    )
    with app.app_context():
        body = f"Bonjour,\n\nVotre lien : http://portail.test.local/x?jeton={secret}\n"
        queued = queue_mail("a@example.fr", "Confirmez", body, secret=secret)
        db.session.commit()
        job_id = queued.id
    # SMTP down: the job waits for its retry, the secret kept (outside the stored body)
    assert run_jobs(app) == (0, 1)
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.status == "pending" and job.payload["secret"] == secret
        assert secret not in job.payload["body"]
        job.next_attempt_at = utcnow()
        db.session.commit()
    app.extensions["psc.settings"] = settings
    assert run_jobs(app) == (1, 0)
    (message,) = inbox.messages
    assert f"jeton={secret}" in message.get_payload(decode=True).decode()
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.status == "done"
        assert secret not in json.dumps(job.payload) and job.payload["secret"] == ""


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_racing_uploads_and_decisions_leave_one_consistent_state(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    employer_auth = auth(portal(client, kit["access_code"]).json["token"])
    data = sign_pdf(issued_pdf(client, employer_auth, kit, PIECES[0]), pki.trusted)
    results: list[int] = []

    def send() -> None:
        with app.test_client() as c:
            results.append(upload(c, employer_auth, kit, PIECES[0], data).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [201, 422, 422, 422]
    returns = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["returns"]
    assert [r["status"] for r in returns].count("accepted") == 1

    pending = upload(
        client,
        employer_auth,
        kit,
        PIECES[1],
        sign_pdf(issued_pdf(client, employer_auth, kit, PIECES[1]), pki.untrusted),
    )
    url = f"/api/v1/returns/{pending.json['id']}/decision"
    answers: list[int] = []

    def decide(accept: bool) -> None:
        with app.test_client() as c:
            body = {"accept": accept, "reason": None if accept else "Signataire inconnu"}
            answers.append(c.post(url, json=body, headers=staff).status_code)

    threads = [threading.Thread(target=decide, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [200, 409, 409, 409]
    final = client.get(f"/api/v1/returns/{pending.json['id']}", headers=staff).json
    assert final["status"] in ("accepted", "refused")
    kit_state = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"]
    assert kit_state == ("employer_signed" if final["status"] == "accepted" else "issued")
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0


def test_dev_cert_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["signing", "dev-cert"])
    assert first.exit_code == 0 and "Certificat créé" in first.output
    assert "DÉVELOPPEMENT" in first.output
    again = runner.invoke(args=["signing", "dev-cert"])
    assert "Certificat existant" in again.output
