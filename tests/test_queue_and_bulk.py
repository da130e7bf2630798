"""Staff's queue page and jobs API, the campaign's letters in one PDF, a CDG's archive in one
streamed ZIP, and the engine's figures in the health answer."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from datetime import datetime, timedelta
from typing import Any

import pikepdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, update

from service import labels
from service.campaigns.models import Campaign
from service.engine.models import Job, WorkerHeartbeat
from service.extensions import db
from service.kits.models import Kit
from service.reference.models import Employer
from service.timeutil import utcnow
from tests.conftest import (
    CONVENTION,
    auth,
    create_token,
    employer_payload,
    record_prerequisites,
    run_jobs,
)
from tests.pdftools import pdf_text
from tests.pki import Pki
from tests.test_archive import signed_kit
from tests.test_pages import csrf, sign_in
from tests.test_reference_api import assert_error

EMPLOYERS = (
    ("21810004800014", "Albi"),
    ("21810001400016", "Aguts"),
    ("20003402300016", "Écoles du Tarn (syndicat)"),
)


def issue(client: FlaskClient, staff: dict[str, str], siret: str) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def add_employers(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The three employers, each with its kit: siret → kit."""
    kits = {}
    for siret, name in EMPLOYERS:
        r = client.post(
            "/api/v1/employers",
            json=employer_payload(convention["id"], siret=siret, name=name),
            headers=staff,
        )
        assert r.status_code == 201, r.json
        record_prerequisites(client.application, siret)
        kits[siret] = issue(client, staff, siret)
    return kits


def employer_id(siret: str) -> int:
    return db.session.scalar(select(Employer.id).where(Employer.siret == siret))


def campaign_with_kits(
    app: Flask, kits: list[dict[str, Any]], *, status: str = "finished", extra_jobs: int = 0
) -> int:
    """A campaign as h3's tasks leave it: a done job per employer, `kit_id` set once issued."""
    with app.app_context():
        campaign = Campaign(
            cdg_code="81",
            status=status,
            total=len(kits) + extra_jobs,
            started_by="staff:production@assureur.fr",
            started_at=utcnow() - timedelta(minutes=5),
            finished_at=utcnow() if status == "finished" else None,
        )
        db.session.add(campaign)
        db.session.flush()
        for kit in kits:
            row = db.session.get(Kit, kit["id"])
            assert row is not None
            db.session.add(
                Job(
                    task="psc.campaigns.issue_kit",
                    payload={"employer_id": row.employer_id, "reference": "camp"},
                    status="done",
                    attempts=1,
                    kit_id=row.id,
                    campaign_id=campaign.id,
                    done_at=utcnow(),
                )
            )
        for _ in range(extra_jobs):
            db.session.add(
                Job(
                    task="psc.campaigns.issue_kit",
                    payload={"employer_id": 999_999, "reference": "camp"},
                    status="pending",
                    campaign_id=campaign.id,
                )
            )
        db.session.commit()
        return campaign.id


def failed_mail(app: Flask, to: str = "rh@mairie-albi.fr", *, kit_id: int | None = None) -> int:
    with app.app_context():
        job = Job(
            task="psc.mail.send",
            payload={"to": to, "subject": "Votre kit", "body": "Bonjour"},
            status="failed",
            attempts=30,
            max_attempts=30,
            last_error="SMTPServerDisconnected: Connection unexpectedly closed",
            kit_id=kit_id,
            started_at=utcnow() - timedelta(minutes=1),
        )
        db.session.add(job)
        db.session.commit()
        return job.id


def heartbeat(
    app: Flask,
    hostname: str,
    *,
    seen_ago: float = 1.0,
    concurrency: int = 2,
    started_at: datetime | None = None,
) -> None:
    with app.app_context():
        db.session.add(
            WorkerHeartbeat(
                hostname=hostname,
                pid=4242,
                concurrency=concurrency,
                started_at=started_at or utcnow() - timedelta(hours=1),
                seen_at=utcnow() - timedelta(seconds=seen_ago),
            )
        )
        db.session.commit()


# -- the queue page --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_queue_page_shows_workers_campaigns_pending_and_failed_work_then_retries(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    kits = add_employers(client, staff, convention)
    albi = kits["21810004800014"]
    campaign_id = campaign_with_kits(app, list(kits.values())[:2], status="running", extra_jobs=1)
    failed_id = failed_mail(app, kit_id=albi["id"])
    with app.app_context():
        other = Job(
            task="psc.campaigns.issue_kit",
            payload={"employer_id": employer_id("21810001400016")},
            status="failed",
            attempts=1,
            last_error="L'employeur n'a pas de convention en cours.",
            campaign_id=campaign_id,
        )
        db.session.add(other)
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.total = 4
        db.session.commit()
        campaign_failed_id = other.id
    heartbeat(app, "celery@machine-a:101", concurrency=3, started_at=datetime(2026, 7, 14, 8, 5))
    heartbeat(app, "celery@machine-morte:102", seen_ago=600)

    assert client.get("/travaux").status_code == 302  # signed out
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    assert client.get("/travaux").status_code == 403  # staff only
    client.post("/deconnexion", data={"csrf_token": csrf(client, "/cdg")})
    sign_in(app, client, "agent@assureur.fr")

    page = client.get("/").get_data(as_text=True)
    assert 'href="/travaux"' in page and "File des travaux" in page  # in the navigation
    body = client.get("/travaux").get_data(as_text=True)
    assert "celery@machine-a:101" in body and "machine-morte" not in body
    assert "<td>3</td><td>14/07/2026 à 10 h 05</td>" in body  # Paris time (UTC+2 in July)
    assert "1 processus répond. <span" in body and "Dates en heure de Paris." in body
    seen = re.search(r"<td>14/07/2026 à 10 h 05</td><td>([^<]*)</td>", body)
    assert seen is not None and re.fullmatch(r"\d\d/\d\d/\d{4} à \d{1,2} h \d\d", seen.group(1))
    # the campaign: 2 done, 1 failed, 1 pending of 4 (its total), by whom, its letters
    assert "gestionnaire production@assureur.fr" in body
    assert 'max="4" value="3"' in body and "En cours" in body
    assert f"/travaux/campagnes/{campaign_id}/courriers.pdf" in body
    # pending by kind, in French; failed jobs with their subject and a French error
    assert "Kit de campagne" in body
    assert "Courriel à rh@mairie-albi.fr ; kit " + albi["reference"] + " (Albi)" in body
    assert "Aguts (SIRET 218 100 014 00016)" in body
    assert "Le serveur de courriel a refusé ou n&#39;a pas répondu" in body
    assert "30 / 30" in body
    visible = re.sub(r"<[^>]+>", " ", body)  # what a person reads (not the forms' values)
    for code in ("psc.", "SMTPServerDisconnected", "pending", "failed", "staff:"):
        assert code not in visible, code

    # « Relancer »: CSRF required, then the job is pending again with fresh attempts
    assert client.post(f"/travaux/{failed_id}/relance").status_code == 400
    token = csrf(client, "/travaux")
    r = client.post(f"/travaux/{failed_id}/relance", data={"csrf_token": token})
    assert r.status_code == 302
    with app.app_context():
        job = db.session.get(Job, failed_id)
        assert job is not None and (job.status, job.attempts) == ("pending", 0)
    body = client.get("/travaux").get_data(as_text=True)
    assert "Tâche relancée : courriel, courriel à rh@mairie-albi.fr" in body
    # a job that is not failed is not retried again
    client.post(f"/travaux/{failed_id}/relance", data={"csrf_token": token})
    body = client.get("/travaux").get_data(as_text=True)
    assert "Seule une tâche en échec peut être relancée" in body

    # « Tout relancer »: what it retries is labelled, and it asks for a confirmation first
    assert '<label for="tache">Tâches à relancer</label>' in body
    assert "Seulement : kit de campagne (1)" in body and 'id="confirm-retry-all"' in body
    client.post("/travaux/relance", data={"csrf_token": token})
    body = client.get("/travaux").get_data(as_text=True)
    assert "Cochez la case de confirmation" in body
    with app.app_context():
        job = db.session.get(Job, campaign_failed_id)
        assert job is not None and job.status == "failed"
    r = client.post("/travaux/relance", data={"csrf_token": token, "confirmation": "oui"})
    assert r.status_code == 302
    body = client.get("/travaux").get_data(as_text=True)
    assert "1 tâche relancée." in body and "Aucune tâche en échec." in body
    with app.app_context():
        job = db.session.get(Job, campaign_failed_id)
        assert job is not None and job.status == "pending"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_failed_jobs_are_shown_a_page_at_a_time(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    with app.app_context():
        db.session.execute(
            insert(Job),
            [
                {
                    "task": "psc.mail.send",
                    "payload": {"to": f"agent{i:03d}@exemple.fr"},
                    "status": "failed",
                    "attempts": 30,
                    "max_attempts": 30,
                    "last_error": "TimeoutError: timed out",
                    "created_at": utcnow(),
                    "next_attempt_at": utcnow(),
                }
                for i in range(120)
            ],
        )
        db.session.commit()
    sign_in(app, client, "agent@assureur.fr")
    body = client.get("/travaux").get_data(as_text=True)
    assert body.count('aria-label="Relancer la tâche n°') == 50
    assert "agent119@exemple.fr" in body and "agent069@exemple.fr" not in body
    assert "120 tâches en échec en tout" in body
    more = re.search(r'href="(/travaux\?echecs_avant=\d+)#echecs"', body)
    assert more is not None
    second = client.get(more.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert "agent069@exemple.fr" in second and "agent070@exemple.fr" not in second
    assert "agent119@exemple.fr" not in second
    assert second.count('aria-label="Relancer la tâche n°') == 50
    # a cursor that is not a number is ignored, not a 500
    assert client.get("/travaux?echecs_avant=abc").status_code == 200

    token = csrf(client, "/travaux")
    client.post(
        "/travaux/relance",
        data={"csrf_token": token, "tache": "psc.mail.send", "confirmation": "oui"},
    )
    with app.app_context():
        statuses = dict(
            db.session.execute(select(Job.status, func.count(Job.id)).group_by(Job.status)).all()
        )
    assert statuses == {"pending": 120}
    assert "120 tâches relancées (courriel)." in client.get("/travaux").get_data(as_text=True)


# -- the jobs API ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_jobs_api_lists_failed_jobs_and_retries_one(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    ids = [failed_mail(app, to=f"rh{i}@exemple.fr") for i in range(3)]
    page = client.get("/api/v1/jobs?status=failed&limit=2", headers=staff).json
    assert [i["id"] for i in page["items"]] == ids[:0:-1]
    first = page["items"][0]
    assert first["kind"] == "Courriel" and first["subject"] == "Courriel à rh2@exemple.fr"
    assert first["attempts"] == 30 and first["status"] == "failed"
    assert first["last_error"].startswith("SMTPServerDisconnected")
    assert page["counts"] == {"pending": 0, "failed": 3}
    rest = client.get(f"/api/v1/jobs?limit=2&after={page['next']}", headers=staff).json
    assert [i["id"] for i in rest["items"]] == ids[:1] and rest["next"] is None

    r = client.post(f"/api/v1/jobs/{ids[0]}/retry", headers=staff)
    assert r.status_code == 200 and r.json["status"] == "pending" and r.json["attempts"] == 0
    assert_error(client.post(f"/api/v1/jobs/{ids[0]}/retry", headers=staff), 409, "job_not_failed")
    assert_error(client.post("/api/v1/jobs/999999/retry", headers=staff), 404, "unknown_job")
    assert_error(client.get("/api/v1/jobs?status=lost", headers=staff), 422, "invalid_status")
    pending = client.get("/api/v1/jobs?status=pending", headers=staff).json["items"]
    assert [i["id"] for i in pending] == [ids[0]]
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    assert client.get("/api/v1/jobs", headers=cdg).status_code == 403
    assert client.post(f"/api/v1/jobs/{ids[1]}/retry", headers=cdg).status_code == 403
    # the retried job really runs again: its mail is sent to the outbox folder
    assert run_jobs(app) == (1, 0)


def finished_campaign_with_a_failure(
    app: Flask, kit: dict[str, Any], siret: str
) -> tuple[int, int]:
    """A finished campaign: one kit done, one employer failed for good. (campaign id, job id)"""
    campaign_id = campaign_with_kits(app, [kit], status="finished")
    with app.app_context():
        job = Job(
            task="psc.campaigns.issue_kit",
            payload={"employer_id": employer_id(siret)},
            status="failed",
            attempts=1,
            max_attempts=5,
            last_error="L'employeur n'a pas de convention en cours.",
            campaign_id=campaign_id,
        )
        db.session.add(job)
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.total = 2
        db.session.commit()
        return campaign_id, job.id


def campaign_status(app: Flask, campaign_id: int) -> tuple[str, datetime | None]:
    with app.app_context():
        campaign = db.session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status, campaign.finished_at


@pytest.mark.parametrize("backend", ["sqlite"])
def test_retrying_a_campaign_job_anywhere_reopens_its_campaign(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    kits = add_employers(client, staff, convention)
    albi = kits["21810004800014"]
    run_jobs(app)  # the kits' e-mails
    # the queue page's « Relancer »
    first, job_id = finished_campaign_with_a_failure(app, albi, "21810001400016")
    assert campaign_status(app, first)[0] == "finished"
    sign_in(app, client, "agent@assureur.fr")
    token = csrf(client, "/travaux")
    client.post(f"/travaux/{job_id}/relance", data={"csrf_token": token})
    assert campaign_status(app, first) == ("running", None)
    # the flash keeps the employer's name as written
    body = client.get("/travaux").get_data(as_text=True)
    assert "Tâche relancée : kit de campagne, Aguts (SIRET 218 100 014 00016)." in body
    assert sum(run_jobs(app)) == 1  # its job is over: so is the campaign
    assert campaign_status(app, first)[0] == "finished"

    # while campaign n° 1 of the CDG runs again, another finished one cannot be reopened
    with app.app_context():
        db.session.execute(update(Campaign).where(Campaign.id == first).values(status="running"))
        db.session.add(Job(task="psc.mail.send", payload={}, status="pending", campaign_id=first))
        db.session.commit()
    second, other_job = finished_campaign_with_a_failure(app, albi, "20003402300016")
    r = client.post(f"/api/v1/jobs/{other_job}/retry", headers=staff)
    assert_error(r, 409, "campaign_running")
    client.post("/travaux/relance", data={"csrf_token": token, "confirmation": "oui"})
    body = client.get("/travaux").get_data(as_text=True)
    assert "Une autre campagne est en cours pour le CDG 81" in body
    with app.app_context():
        job = db.session.get(Job, other_job)
        assert job is not None and job.status == "failed"  # nothing was retried
    assert campaign_status(app, second)[0] == "finished"
    with app.app_context():
        db.session.execute(update(Campaign).where(Campaign.id == first).values(status="finished"))
        db.session.execute(update(Job).where(Job.status == "pending").values(status="done"))
        db.session.commit()

    # the API's retry, then « Tout relancer »
    r = client.post(f"/api/v1/jobs/{other_job}/retry", headers=staff)
    assert r.status_code == 200, r.json
    assert campaign_status(app, second) == ("running", None)
    assert sum(run_jobs(app)) == 1
    assert campaign_status(app, second)[0] == "finished"
    with app.app_context():
        db.session.execute(update(Job).where(Job.id == other_job).values(status="failed"))
        db.session.commit()
    client.post(
        "/travaux/relance",
        data={"csrf_token": token, "tache": "psc.campaigns.issue_kit", "confirmation": "oui"},
    )
    assert campaign_status(app, second) == ("running", None)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_job_failed_for_good_reads_as_such_with_its_last_try(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    with app.app_context():
        campaign = Campaign(cdg_code="81", status="running", total=1, started_by="cli:root")
        db.session.add(campaign)
        db.session.flush()
        job = Job(
            task="psc.campaigns.issue_kit",
            payload={"employer_id": 999_999},
            max_attempts=5,
            campaign_id=campaign.id,
        )
        db.session.add(job)
        db.session.commit()
        job_id = job.id
    assert run_jobs(app) == (0, 1)  # the employer is gone: a ServiceError, failed at once
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None and (job.status, job.attempts) == ("failed", 1)
        assert job.started_at is not None  # the last try's time
        last_try = labels.when(job.started_at)
    failed_mail(app)  # out of attempts: « 30 / 30 »
    sign_in(app, client, "agent@assureur.fr")
    body = client.get("/travaux").get_data(as_text=True)
    assert "Échec définitif (données à corriger), après 1 essai" in body
    assert "1 / 5" not in body and "30 / 30" in body
    assert last_try and f"<td>{last_try}</td>\n    <td><form" in body  # « Dernier essai »


@pytest.mark.parametrize("backend", ["sqlite"])
def test_campaign_page_links_to_its_letters_the_queue_and_its_employers(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    kits = add_employers(client, staff, convention)
    campaign_id, _ = finished_campaign_with_a_failure(app, kits["21810004800014"], "21810001400016")
    sign_in(app, client, "agent@assureur.fr")
    body = client.get(f"/lots/{campaign_id}").get_data(as_text=True)
    assert f'href="/travaux/campagnes/{campaign_id}/courriers.pdf"' in body
    assert 'href="/travaux#campagnes">File des travaux</a>' in body
    # its failures lead to the employer's page; so do the queue page's, and its campaigns
    assert '<a href="/employeurs/21810001400016">Aguts</a>' in body
    body = client.get("/travaux").get_data(as_text=True)
    assert f'<a href="/lots/{campaign_id}" aria-label="Campagne n° {campaign_id}">' in body
    assert '<a href="/employeurs/21810001400016">Aguts (SIRET 218 100 014 00016)</a>' in body


# -- the campaign's letters ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_campaign_letters_in_one_print_ready_pdf_in_employer_order(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    kits = add_employers(client, staff, convention)
    # another CDG's kit wrongly tied to the campaign never gets in
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    other_convention = client.post(
        "/api/v1/conventions",
        json={**CONVENTION, "cdg": "82", "reference": "CDG82-PREV"},
        headers=staff,
    ).json
    r = client.post(
        "/api/v1/employers",
        json=employer_payload(
            other_convention["id"], siret="21820121400010", name="Montauban", cdg="82"
        ),
        headers=staff,
    )
    assert r.status_code == 201, r.json
    record_prerequisites(app, "21820121400010")
    stranger = issue(client, staff, "21820121400010")
    campaign_id = campaign_with_kits(app, [*kits.values(), stranger])

    r = client.get(f"/api/v1/campaigns/{campaign_id}/letters.pdf", headers=staff)
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="courriers-acces-cdg-81-campagne-{campaign_id}.pdf"'
    )
    assert r.headers["X-Letters-Count"] == "3"
    pdf = pikepdf.open(io.BytesIO(r.data))
    with pdf.open_outline() as outline:
        entries = [(item.title, item.destination) for item in outline.root]
    order = ["21810001400016", "21810004800014", "20003402300016"]  # Aguts, Albi, Écoles
    names = {siret: name for siret, name in EMPLOYERS}
    assert [title for title, _ in entries] == [
        f"{names[s]} – {kits[s]['reference']}" for s in order
    ]
    # each letter starts on a recto: odd page counts get a blank verso
    letter_pages = {
        s: next(d["pages"] for d in kits[s]["documents"] if d["kind"] == "access-letter")
        for s in order
    }
    assert set(letter_pages.values()) == {1}  # so each gets a blank verso
    padded = [n + n % 2 for n in (letter_pages[s] for s in order)]
    assert len(pdf.pages) == sum(padded)
    starts = [pdf.pages.index(pikepdf.Page(pdf.get_object(dest[0].objgen))) for _, dest in entries]
    assert starts == [sum(padded[:i]) for i in range(3)]
    text = pdf_text(r.data)
    for siret, start, n in zip(order, starts, padded, strict=True):
        assert names[siret].split(" ")[0] in text[start]
        if n > letter_pages[siret]:
            assert text[start + n - 1] == ""  # the blank verso
    assert not any("Montauban" in page for page in text)
    # audited in each kit's journal: the letter carries its access code
    for s in order:
        events = client.get(f"/api/v1/kits/{kits[s]['id']}/events", headers=staff).json["items"]
        assert [e["event"] for e in events].count("letters_downloaded") == 1
    events = client.get(f"/api/v1/kits/{stranger['id']}/events", headers=staff).json["items"]
    assert "letters_downloaded" not in [e["event"] for e in events]

    # the page's link, with a staff session
    sign_in(app, client, "agent@assureur.fr")
    page = client.get(f"/travaux/campagnes/{campaign_id}/courriers.pdf")
    assert page.status_code == 200 and page.data[:5] == b"%PDF-"

    assert_error(
        client.get("/api/v1/campaigns/999999/letters.pdf", headers=staff), 404, "unknown_campaign"
    )
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    assert (
        client.get(f"/api/v1/campaigns/{campaign_id}/letters.pdf", headers=cdg).status_code == 403
    )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_letters_of_a_running_campaign_are_partial_and_none_is_a_conflict(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    kits = add_employers(client, staff, convention)
    running = campaign_with_kits(app, [kits["21810004800014"]], status="running", extra_jobs=2)
    r = client.get(f"/api/v1/campaigns/{running}/letters.pdf", headers=staff)
    assert r.status_code == 200 and r.headers["X-Letters-Count"] == "1"
    assert f"campagne-{running}-partiel.pdf" in r.headers["Content-Disposition"]
    empty = campaign_with_kits(app, [], status="finished", extra_jobs=2)
    assert_error(
        client.get(f"/api/v1/campaigns/{empty}/letters.pdf", headers=staff), 409, "no_letters"
    )
    # a cancelled kit's code opens nothing: its letter is left out
    albi = kits["21810004800014"]
    r = client.post(
        f"/api/v1/kits/{albi['id']}/cancel", json={"reason": "Erreur de saisie"}, headers=staff
    )
    assert r.status_code == 200, r.json
    assert_error(
        client.get(f"/api/v1/campaigns/{running}/letters.pdf", headers=staff), 409, "no_letters"
    )


# -- the CDG's archive in one ZIP ------------------------------------------------------------


def test_cdg_archive_zip_streams_every_copy_with_its_summary(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], pki: Pki
) -> None:
    kit = signed_kit(client, staff, pki)
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200, r.json
    run_jobs(app)  # archive copies that went through the engine
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    items = client.get("/api/v1/archive?cdg=81", headers=own).json["items"]
    assert {i["kind"] for i in items} >= {"manifest", "special-conditions", "proof"}

    r = client.get("/api/v1/cdgs/81/archive.zip", headers=own, buffered=False)
    assert r.status_code == 200 and r.mimetype == "application/zip" and r.is_streamed
    chunks = list(r.response)
    r.close()
    data = b"".join(chunks)
    # written as it is read, a piece at a time: never the whole ZIP in one buffer
    assert len(chunks) > len(items) and max(map(len, chunks)) <= 1 << 20
    assert int(r.headers["Content-Length"]) == len(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[0] == "sommaire.csv"
    folder = f"albi-21810004800014/{kit['reference']}/"
    by_sha = {i["sha256"]: i for i in items}
    members = [n for n in names if n != "sommaire.csv"]
    assert len(members) == len(items)
    for name in members:
        assert name.startswith(folder)
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        assert digest in by_sha, name
    assert f"{folder}{kit['reference']}-conditions-particulieres-contresignee.pdf" in names
    assert f"{folder}{kit['reference']}-manifeste.json" in names
    assert f"{folder}{kit['reference']}-certificat-de-preuve.pdf" in names
    assert not any("special-conditions" in n or "manifest.json" in n for n in names)
    summary = archive.read("sommaire.csv").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(summary), delimiter=";"))
    assert rows[0][:4] == ["Collectivité", "SIRET", "Référence du kit", "Pièce"]
    assert len(rows) == 1 + len(items)
    for row in rows[1:]:
        record = dict(zip(rows[0], row, strict=True))
        assert hashlib.sha256(archive.read(record["Fichier"])).hexdigest() == record["SHA-256"]
        assert record["Collectivité"] == "Albi" and record["SIRET"] == "218 100 048 00014"
    assert "Conditions particulières" in [row[3] for row in rows[1:]]

    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    assert [e["event"] for e in events].count("archive_downloaded") == 1
    # staff too; another CDG's token and an unknown CDG: 404
    assert client.get("/api/v1/cdgs/81/archive.zip", headers=staff).status_code == 200
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    other = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    assert_error(client.get("/api/v1/cdgs/81/archive.zip", headers=other), 404, "unknown_cdg")
    assert_error(client.get("/api/v1/cdgs/99/archive.zip", headers=staff), 404, "unknown_cdg")
    # CDG 82 has nothing archived: a ZIP with the summary alone
    empty = zipfile.ZipFile(
        io.BytesIO(client.get("/api/v1/cdgs/82/archive.zip", headers=other).data)
    )
    assert empty.namelist() == ["sommaire.csv"]
    # from the CDG's pages, with its session: its own archive only
    sign_in(app, client, "archives@cdg81.fr", role="cdg", cdg="81")
    page = client.get("/cdg/81/archive.zip")
    assert page.status_code == 200 and zipfile.ZipFile(io.BytesIO(page.data)).namelist() == names
    assert client.get("/cdg/82/archive.zip").status_code == 404


# -- health ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_health_reports_workers_and_jobs_without_turning_red(
    app: Flask, client: FlaskClient
) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json["status"] == "ok" and r.json["workers"] == 0  # no worker: still ok
    assert r.json["jobs"] == {"pending": 0, "failed": 0}
    failed_mail(app)
    with app.app_context():
        db.session.add(Job(task="psc.mail.send", payload={"to": "a@b.fr"}, status="pending"))
        db.session.commit()
    heartbeat(app, "celery@machine-a:1")
    heartbeat(app, "celery@ancienne:2", seen_ago=120)
    r = client.get("/api/v1/health")
    assert r.status_code == 200 and r.json["status"] == "ok"
    assert r.json["workers"] == 1 and r.json["jobs"] == {"pending": 1, "failed": 1}
