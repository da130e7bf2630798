"""Pages without a browser: sign-in rules, scopes, and a campaign's progress and failures."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.extensions import db
from tests.conftest import CONVENTION, employer_payload, record_prerequisites, run_jobs


def csrf(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match is not None
    return match.group(1)


def sign_in(
    app: Flask, client: FlaskClient, email: str, role: str = "staff", cdg: str | None = None
) -> None:
    from service.accounts.auth import create_user

    with app.app_context():
        create_user(email=email, role=role, cdg_code=cdg, password="un long mot de passe")
        db.session.commit()
    r = client.post(
        "/connexion",
        data={
            "email": email,
            "password": "un long mot de passe",
            "csrf_token": csrf(client, "/connexion"),
        },
    )
    assert r.status_code == 302


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pages_need_the_right_role(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    assert client.get("/revue").status_code == 302
    assert client.get("/portail/kit").headers["Location"].startswith("/portail")
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    assert client.get("/").headers["Location"] == "/cdg"
    # staff only: a signed-in CDG user is told so (not sent to the sign-in form again)
    for path in ("/revue", "/travaux", "/lots/1", "/employeurs/21810004800014"):
        page = client.get(path)
        assert page.status_code == 403, path
        assert "Accès réservé au personnel de l&#39;assureur" in page.get_data(as_text=True)
    assert client.get("/cdg/82/archive.zip").status_code == 404  # another CDG's: not found
    page = client.get("/cdg")
    assert page.status_code == 200 and "Suivi des adhésions" in page.get_data(as_text=True)
    client.post("/deconnexion", data={"csrf_token": csrf(client, "/cdg")})
    assert client.get("/cdg").status_code == 302


@pytest.mark.parametrize("backend", ["sqlite"])
def test_campaign_page_shows_progress_failures_and_retries_them(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    ended = {**CONVENTION, "reference": "CDG81-PREV-2019", "starts_on": "2019-01-01"}
    old = client.post("/api/v1/conventions", json={**ended, "ends_on": "2023-12-31"}, headers=staff)
    assert old.status_code == 201, old.json
    for siret, name, convention_id, dates in (
        ("21810004800014", "Albi", convention["id"], {}),
        ("21810001400016", "Aguts", convention["id"], {}),
        (
            "20003402300016",
            "CC Tarn-Agout",
            old.json["id"],
            {"cst_opinion_on": "2019-03-01", "deliberation_on": "2019-04-01"},
        ),
    ):
        r = client.post(
            "/api/v1/employers",
            json=employer_payload(convention_id, siret=siret, name=name, **dates),
            headers=staff,
        )
        assert r.status_code == 201, r.json
        record_prerequisites(app, siret)
    sign_in(app, client, "agent@assureur.fr")
    r = client.post(
        "/lots", data={"cdg": "81", "csrf_token": csrf(client, "/"), "confirmation": "oui"}
    )
    assert r.status_code == 302
    url = r.headers["Location"]
    first = client.get(url).get_data(as_text=True)
    assert "Tous les employeurs du CDG" not in client.get("/?cdg=81").get_data(as_text=True)
    assert '<progress id="progress" max="3" value="0"' in first
    assert 'http-equiv="refresh"' in first and "En cours" in first
    assert "Aucun worker ne répond" in first  # no worker in this test: the jobs wait
    again = client.post(
        "/lots", data={"cdg": "81", "csrf_token": csrf(client, "/"), "confirmation": "oui"}
    )
    assert "déjà en cours" in client.get(again.headers["Location"]).get_data(as_text=True)
    run_jobs(app)  # what a worker does, in this process
    body = client.get(url).get_data(as_text=True)
    assert "Terminé : 2 kits émis, 1 échec." in body and 'http-equiv="refresh"' not in body
    assert "CC Tarn-Agout</a> (SIRET 200 034 023 00016) : Aucun début de garantie possible" in body
    assert "Relancer les échecs" in body
    for code in ("cover_outside_convention", "psc.campaigns", "running", "finished", "pending"):
        assert code not in body  # no code name on the page
    # the data fixed, staff retry the failure from the page
    fixed = client.patch(
        f"/api/v1/conventions/{old.json['id']}", json={"ends_on": "2030-12-31"}, headers=staff
    )
    assert fixed.status_code == 200, fixed.json
    r = client.post(f"{url}/relance", data={"csrf_token": csrf(client, url)})
    assert r.status_code == 302
    assert "1 kit en échec relancé." in client.get(url).get_data(as_text=True)
    run_jobs(app)
    body = client.get(url).get_data(as_text=True)
    assert "Terminé : 3 kits émis, 0 échec." in body and "Relancer" not in body
    assert client.get("/api/v1/employers?status=issued", headers=staff).json["total"] == 3
    dashboard = client.get("/?cdg=81").get_data(as_text=True)
    assert "Campagne n° " in dashboard and "3/3 kits" in dashboard
    assert "Dernières campagnes" in dashboard
    # nothing left to issue: no confirmation to tick, the button is disabled, and why
    assert "Tous les employeurs du CDG 81 ont un kit." in dashboard
    assert "<td>218 100 048 00014</td>" in dashboard  # SIRET in groups, as everywhere
    missing = client.get("/lots/999999")
    assert missing.status_code == 404 and "Campagne introuvable." in missing.get_data(as_text=True)
    assert 'id="confirm-campaign"' not in dashboard
    assert '<button type="submit" disabled aria-describedby="nothing-to-issue">' in dashboard
    assert '<a href="/travaux#campagnes">Toutes les campagnes</a>' in dashboard


@pytest.mark.parametrize("backend", ["sqlite"])
def test_staff_can_lift_a_portal_lockout_from_the_page(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = client.post("/api/v1/employers/21810004800014/kits", headers=staff).json
    for _ in range(5):  # from one address: it is blocked, and staff see the guessing
        r = client.post(
            "/api/v1/portal/session",
            json={"siret": "21810004800014", "access_code": "AAAA-BBBB-CCCC-DDDD"},
            environ_base={"REMOTE_ADDR": "192.0.2.66"},
        )
        assert r.status_code == 401
    sign_in(app, client, "agent@assureur.fr")
    page = client.get("/employeurs/21810004800014").get_data(as_text=True)
    assert "<dt>SIRET</dt><dd>218 100 048 00014</dd>" in page
    assert "bloqué après trop d'essais" in page
    token = csrf(client, "/employeurs/21810004800014")
    r = client.post("/employeurs/21810004800014/deverrouillage", data={"csrf_token": token})
    assert r.status_code == 302
    page = client.get("/employeurs/21810004800014").get_data(as_text=True)
    assert "bloqué après trop d'essais" not in page and "débloqué" in page
    r = client.post(
        "/api/v1/portal/session",
        json={"siret": "21810004800014", "access_code": kit["access_code"]},
        environ_base={"REMOTE_ADDR": "192.0.2.66"},
    )
    assert r.status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:x"])
def test_sign_in_never_redirects_off_site(app: Flask, client: FlaskClient, target: str) -> None:
    from service.accounts.auth import create_user

    with app.app_context():
        create_user(email="agent@assureur.fr", role="staff", password="un long mot de passe")
        db.session.commit()
    token = csrf(client, "/connexion")
    r = client.post(
        f"/connexion?suivant={target}",
        data={
            "email": "agent@assureur.fr",
            "password": "un long mot de passe",
            "csrf_token": token,
        },
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"
