"""Campaigns over real Celery worker processes on Redis: one kit per employer whatever happens
(duplicated messages, a worker killed with kill -9), failures listed with their French reason
and retried, and the CLI with and without a worker."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.audit.models import AuditEvent
from service.backends import document_store
from service.campaigns.tasks import warm_up
from service.engine import outbox
from service.engine.celery_app import live_workers
from service.engine.models import Job
from service.extensions import db
from service.kits.models import Kit
from service.reference.rules import siret_from_siren
from tests.conftest import (
    ARTIFACTS,
    CONVENTION,
    employer_payload,
    record_prerequisites,
    run_jobs,
)
from tests.workers import redis_config, stop, wait_for, worker

#: real workers claiming jobs concurrently: on PostgreSQL as well as SQLite; the kill -9 and the
#: retried failure are about the broker and the outbox, with workers as deployed (PostgreSQL)
pytestmark = pytest.mark.postgres


ISSUE = "psc.campaigns.issue_kit"


@pytest.fixture
def app_config() -> dict[str, str]:
    # a lost message is sent again after 2 s by the sweep (beat's, or `flask jobs sweep`)
    return {**redis_config(), "TASK_STALE_SECONDS": "2"}


def _log(app: Flask, name: str) -> Path:
    return (
        ARTIFACTS / "workers" / f"campaign-{name}-{app.extensions['psc.settings'].task_queue}.log"
    )


def add_employers(
    client: FlaskClient,
    staff: dict[str, str],
    convention_id: int,
    count: int,
    *,
    first: int = 0,
    **overrides: Any,
) -> list[str]:
    sirets = []
    for n in range(first, first + count):
        siret = siret_from_siren(f"2181{n:05d}")
        payload = employer_payload(
            convention_id,
            siret=siret,
            name=f"Commune {n:02d}",
            email=f"rh{n}@mairie.fr",
            **overrides,
        )
        r = client.post("/api/v1/employers", json=payload, headers=staff)
        assert r.status_code == 201, r.json
        sirets.append(siret)
    record_prerequisites(client.application, *sirets)
    return sirets


def kits_per_employer(app: Flask) -> Counter[str]:
    with app.app_context():
        rows = db.session.execute(
            select(Kit.reference, Kit.employer_id).where(Kit.status != "superseded")
        ).all()
        everything = db.session.scalar(select(func.count(Kit.id)))
        db.session.remove()
    assert everything == len(rows)  # a campaign never supersedes: never two kits
    return Counter(employer_id for _, employer_id in rows)


def jobs(app: Flask, task: str = ISSUE) -> list[Job]:
    with app.app_context():
        rows = list(db.session.scalars(select(Job).where(Job.task == task).order_by(Job.id)))
        db.session.expunge_all()
        db.session.remove()
    return rows


def campaign(client: FlaskClient, staff: dict[str, str], campaign_id: int) -> dict[str, Any]:
    r = client.get(f"/api/v1/campaigns/{campaign_id}", headers=staff)
    assert r.status_code == 200, r.json
    return r.json


def finished(client: FlaskClient, staff: dict[str, str], campaign_id: int) -> dict[str, Any]:
    return wait_for(
        lambda: (c := campaign(client, staff, campaign_id))["status"] == "finished" and c,
        timeout=120,
        what=f"campaign {campaign_id} finished",
    )


def test_campaign_end_to_end_on_a_worker_with_duplicated_messages(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    sirets = add_employers(client, staff, convention["id"], 6)
    r = client.post("/api/v1/cdgs/81/campaigns", headers=staff)
    assert r.status_code == 202, r.json
    campaign_id, total = r.json["id"], r.json["total"]
    assert total == 6
    again = client.post("/api/v1/cdgs/81/campaigns", headers=staff)
    assert again.status_code == 409 and again.json["error"]["code"] == "campaign_running"
    assert "déjà en cours" in again.json["error"]["message"]
    before = campaign(client, staff, campaign_id)
    assert (before["status"], before["pending"], before["done"]) == ("running", 6, 0)
    # the references were reserved up front, all different, in one sequence
    references = [j.payload["reference"] for j in jobs(app)]
    assert len(set(references)) == 6
    assert sorted(int(ref.rsplit("-", 1)[1]) for ref in references) == list(range(1, 7))
    # every task message twice: a duplicate finds its job claimed or done and does nothing
    with app.app_context():
        assert outbox.send([(j.id, j.task) for j in jobs(app)]) == 6
    with worker(app, _log(app, "e2e"), concurrency=2):
        done = finished(client, staff, campaign_id)
    assert (done["total"], done["done"], done["failed"], done["pending"]) == (6, 6, 0, 0)
    assert done["failures"] == [] and done["finished_at"] is not None
    per_employer = kits_per_employer(app)
    assert len(per_employer) == 6 and set(per_employer.values()) == {1}
    issued = jobs(app)
    with app.app_context():
        kits = {k.id: k for k in db.session.scalars(select(Kit))}
        # each job points to its kit, issued under the reference it carried
        assert sorted(kits[j.kit_id].reference for j in issued) == sorted(references)
        assert {kits[j.kit_id].issued_by for j in issued} == {"staff:production@assureur.fr"}
        db.session.remove()
    # one « kit émis » e-mail per kit, queued with it
    mails = jobs(app, "psc.mail.send")
    assert len(mails) == 6 and {m.kit_id for m in mails} == {j.kit_id for j in issued}
    listing = client.get("/api/v1/campaigns?cdg=81", headers=staff).json["items"]
    assert [(c["id"], c["status"], c["done"]) for c in listing] == [(campaign_id, "finished", 6)]
    # each pool process rendered the convention's kit before its first task
    warmed = re.findall(r"worker process warmed up: (\d+) kit", _log(app, "e2e").read_text())
    assert warmed == ["1", "1"]
    nothing = client.post("/api/v1/cdgs/81/campaigns", headers=staff)
    assert nothing.status_code == 409 and nothing.json["error"]["code"] == "nothing_to_issue"
    employers = client.get("/api/v1/employers?cdg=81&status=issued", headers=staff).json
    assert sorted(e["siret"] for e in employers["items"]) == sorted(sirets)


def test_warm_up_renders_a_kit_per_convention_and_keeps_nothing(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    add_employers(client, staff, convention["id"], 2)
    with app.app_context():
        store = document_store()
        events = db.session.scalar(select(func.count(AuditEvent.id)))
        assert warm_up() == 1  # one convention
        assert db.session.scalar(select(func.count(Kit.id))) == 0
        assert db.session.scalar(select(func.count(AuditEvent.id))) == events
        assert db.session.scalar(select(func.count(Job.id))) == 0
        assert list(store.list("kits/")) == []
        db.session.remove()


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_worker_killed_mid_campaign_loses_nothing(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    add_employers(client, staff, convention["id"], 6)
    campaign_id = client.post("/api/v1/cdgs/81/campaigns", headers=staff).json["id"]
    with worker(app, _log(app, "killed"), concurrency=2) as proc:
        wait_for(
            lambda: campaign(client, staff, campaign_id)["done"] >= 1,
            timeout=120,
            what="a first kit",
        )
        stop(proc, hard=True)  # kill -9 of the worker's process group, mid-campaign
    middle = campaign(client, staff, campaign_id)
    assert middle["status"] == "running" and middle["pending"] >= 1, middle
    # the killed worker's messages are unacknowledged: the sweep sends their jobs again
    runner = app.test_cli_runner()
    wait_for(
        lambda: int(runner.invoke(args=["jobs", "sweep"]).output.split()[0]) > 0,
        timeout=30,
        what="the sweep sends the left-behind jobs",
    )
    with worker(app, _log(app, "restarted"), concurrency=2):
        done = finished(client, staff, campaign_id)
    assert (done["done"], done["failed"], done["pending"]) == (6, 0, 0)
    per_employer = kits_per_employer(app)
    assert len(per_employer) == 6 and set(per_employer.values()) == {1}


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_failing_employer_is_listed_and_retried_after_the_fix(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    ended = {**CONVENTION, "reference": "CDG81-PREV-2019", "starts_on": "2019-01-01"}
    r = client.post("/api/v1/conventions", json={**ended, "ends_on": "2023-12-31"}, headers=staff)
    assert r.status_code == 201, r.json
    add_employers(client, staff, convention["id"], 2)
    ended_id = r.json["id"]
    (late,) = add_employers(
        client,
        staff,
        ended_id,
        1,
        first=50,
        cst_opinion_on="2019-03-01",
        deliberation_on="2019-04-01",
    )
    campaign_id = client.post("/api/v1/cdgs/81/campaigns", headers=staff).json["id"]
    with worker(app, _log(app, "failing"), concurrency=2):
        done = finished(client, staff, campaign_id)
        assert (done["done"], done["failed"], done["pending"]) == (2, 1, 0)
        (failure,) = done["failures"]
        assert failure["siret"] == late and failure["name"] == "Commune 50"
        assert failure["error"].startswith("Aucun début de garantie possible")
        # the data fixed, the failure is retried
        fix = client.patch(
            f"/api/v1/conventions/{ended_id}", json={"ends_on": "2030-12-31"}, headers=staff
        )
        assert fix.status_code == 200, fix.json
        retried = client.post(f"/api/v1/campaigns/{campaign_id}/retry", headers=staff)
        assert retried.status_code == 202 and retried.json["retried"] == 1
        assert retried.json["status"] == "running"
        done = finished(client, staff, campaign_id)
    assert (done["done"], done["failed"], done["failures"]) == (3, 0, [])
    assert set(kits_per_employer(app).values()) == {1} and len(kits_per_employer(app)) == 3


def test_cli_waits_for_the_workers_or_runs_the_campaign_here(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    runner = app.test_cli_runner()
    add_employers(client, staff, convention["id"], 2)
    alone = runner.invoke(args=["kits", "issue", "--cdg", "81", "--workers", "2"])
    assert alone.exit_code == 0, alone.output
    started = re.search(r"la campagne n° (\d+) du CDG 81 \(2 kits à émettre\)", alone.output)
    assert started is not None, alone.output
    assert "est exécutée ici sur 2 processus." in alone.output
    assert "2 kits émis, 0 échec." in alone.output

    add_employers(client, staff, convention["id"], 2, first=10)
    later = runner.invoke(args=["kits", "issue", "--cdg", "81", "--no-wait"])
    assert later.exit_code == 0, later.output
    campaign_id = int(later.output.strip().splitlines()[-1])
    assert "Campagne n° " in later.output and "2 kits à émettre" in later.output
    assert campaign(client, staff, campaign_id)["pending"] == 2
    with worker(app, _log(app, "cli"), concurrency=2):
        finished(client, staff, campaign_id)  # the messages waited in Redis for a worker
        with app.app_context():
            wait_for(live_workers, what="a worker's heartbeat")
            db.session.remove()
        add_employers(client, staff, convention["id"], 2, first=20)
        waited = runner.invoke(args=["kits", "issue", "--cdg", "81"])
    assert waited.exit_code == 0, waited.output
    assert "Aucun worker" not in waited.output and "2 kits émis, 0 échec." in waited.output
    assert re.search(
        r"Campagne n° \d+ du CDG 81 : 2 kits à émettre, par les workers", waited.output
    )

    # a campaign left running with no worker (started with --no-wait, or interrupted) is resumed
    add_employers(client, staff, convention["id"], 1, first=30)
    left = int(runner.invoke(args=["kits", "issue", "--cdg", "81", "--no-wait"]).output.split()[-1])
    resumed = runner.invoke(args=["kits", "issue", "--cdg", "81", "--workers", "4"])
    assert resumed.exit_code == 0, resumed.output
    assert f"La campagne n° {left} du CDG 81 est en cours : reprise." in resumed.output
    assert f"la campagne n° {left} du CDG 81 (1 kit à émettre)" in resumed.output
    assert "exécutée ici sur 1 processus" in resumed.output  # one kit: not 4 processes
    assert "1 kit émis, 0 échec." in resumed.output
    per_employer = kits_per_employer(app)
    assert len(per_employer) == 7 and set(per_employer.values()) == {1}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_campaign_failures_read_in_french_and_unknown_ones_are_404(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    """No worker here: the jobs are run in this process (`flask jobs run` does the same)."""
    assert client.post("/api/v1/cdgs/99/campaigns", headers=staff).status_code == 404
    assert client.get("/api/v1/campaigns/12345", headers=staff).status_code == 404
    add_employers(client, staff, convention["id"], 2)
    campaign_id = client.post("/api/v1/cdgs/81/campaigns", headers=staff).json["id"]
    first, second = jobs(app)
    with app.app_context():
        # what the outbox records of an unexpected exception once its attempts are spent
        job = db.session.get(Job, first.id)
        job.status, job.last_error = "failed", "OperationalError: (psycopg) server closed"
        db.session.commit()
    assert run_jobs(app)[1] == 0
    done = campaign(client, staff, campaign_id)
    assert (done["status"], done["done"], done["failed"]) == ("finished", 1, 1)
    assert done["failures"][0]["error"].startswith("Erreur technique")
    assert "OperationalError" not in str(done)
    with app.app_context():  # as the queue page retries one job, the campaign aside
        outbox.retry(first.id)
        db.session.commit()
    again = campaign(client, staff, campaign_id)
    assert (again["status"], again["pending"], again["finished_at"]) == ("running", 1, None)
    run_jobs(app)
    done = campaign(client, staff, campaign_id)
    assert (done["status"], done["done"], done["failed"]) == ("finished", 2, 0)
    assert len(kits_per_employer(app)) == 2 and second.kit_id is None
