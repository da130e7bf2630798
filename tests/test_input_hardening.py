"""Bad input found in review (issue 9): NUL characters and odd ids on the pages, pagination out
of range, a SIRET typed too long, broken JSON when issuing a kit, and racing uploads against the
hourly quota. Each answers a 4xx in French (or does the right thing), never a 500."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service import ID_MAX
from service.accounts.models import ApiToken, WebSession
from service.extensions import db
from service.returns.models import KitReturn
from tests.conftest import auth
from tests.pki import Pki, sign_pdf
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


PASSWORD = "un long mot de passe"
POSTGRES = pytest.mark.parametrize("backend", ["postgres"])
SQLITE = pytest.mark.parametrize("backend", ["sqlite"])


def csrf(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match is not None
    return match.group(1)


def staff_pages(app: Flask, client: FlaskClient) -> None:
    from service.accounts.auth import create_user

    with app.app_context():
        create_user(email="agent@assureur.fr", role="staff", password=PASSWORD)
        db.session.commit()
    r = client.post(
        "/connexion",
        data={
            "email": "agent@assureur.fr",
            "password": PASSWORD,
            "csrf_token": csrf(client, "/connexion"),
        },
    )
    assert r.status_code == 302


def assert_nul_refused(response: Any) -> None:
    assert response.status_code == 422, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    assert "Caractère nul interdit" in response.get_data(as_text=True)


@pytest.fixture
def kit(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201
    return r.json


# -- NUL characters and ids on the pages -----------------------------------------------------


def test_sign_in_page_with_nul_in_the_email_is_a_french_422(
    app: Flask, client: FlaskClient
) -> None:
    r = client.post(
        "/connexion",
        data={
            "email": "agent\x00@assureur.fr",
            "password": PASSWORD,
            "csrf_token": csrf(client, "/connexion"),
        },
    )
    assert_nul_refused(r)


def test_employer_form_with_nul_in_the_name_is_a_french_422(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    staff_pages(app, client)
    r = client.post(
        "/employeurs/nouveau",
        data={
            "siret": SIRET,
            "name": "Al\x00bi",
            "kind": "commune",
            "convention_id": str(convention["id"]),
            "csrf_token": csrf(client, "/employeurs/nouveau"),
        },
    )
    assert_nul_refused(r)
    assert client.get("/").status_code == 200  # the session still works


def test_page_query_with_nul_is_a_french_422(app: Flask, client: FlaskClient) -> None:
    staff_pages(app, client)
    assert_nul_refused(client.get("/", query_string={"q": "Al\x00bi"}))
    assert_nul_refused(client.get("/", query_string={"q\x00": "Albi"}))


@POSTGRES
def test_kit_cancel_page_with_nul_in_the_reason_is_a_french_422(
    app: Flask, client: FlaskClient, staff: dict[str, str], kit: dict[str, Any]
) -> None:
    staff_pages(app, client)
    r = client.post(
        f"/kits/{kit['id']}/annulation",
        data={
            "reason": "Erreur\x00 de saisie",
            "confirmation": "oui",
            "csrf_token": csrf(client, f"/employeurs/{SIRET}"),
        },
    )
    assert_nul_refused(r)
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "issued"


def test_employer_form_with_an_odd_convention_id_asks_for_a_convention(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    staff_pages(app, client)
    token = csrf(client, "/employeurs/nouveau")
    for raw in ("²", "99999999999999999999", str(ID_MAX + 1), "0", "007", " 1", "١", "-1"):
        r = client.post(
            "/employeurs/nouveau",
            data={
                "siret": SIRET,
                "name": "Albi",
                "kind": "commune",
                "convention_id": raw,
                "csrf_token": token,
            },
        )
        assert r.status_code == 200, raw
        assert "Choisissez une convention." in r.get_data(as_text=True), raw


@SQLITE
def test_dashboard_with_an_odd_waiting_filter_lists_every_employer(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    staff_pages(app, client)
    for waiting in ("²", "١", "99999999999999999999"):
        r = client.get("/", query_string={"cdg": "81", "attente": waiting})
        assert r.status_code == 200, waiting
        assert "Albi" in r.get_data(as_text=True)


@SQLITE
def test_review_decision_with_an_odd_version_is_decided(
    app: Flask, client: FlaskClient, staff: dict[str, str], kit: dict[str, Any], pki: Pki
) -> None:
    employer_auth = auth(portal(client, kit["access_code"]).json["token"])
    data = sign_pdf(issued_pdf(client, employer_auth, kit, PIECES[0]), pki.untrusted)
    pending = upload(client, employer_auth, kit, PIECES[0], data).json
    assert pending["status"] == "pending_review"
    staff_pages(app, client)
    r = client.post(
        f"/revue/{pending['id']}",
        data={"decision": "accept", "version": "²", "csrf_token": csrf(client, "/")},
    )
    assert r.status_code == 302
    assert client.get(f"/api/v1/returns/{pending['id']}", headers=staff).json["status"] == (
        "accepted"
    )


# -- pagination bounds -----------------------------------------------------------------------


def test_employers_pagination_out_of_range_is_422(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    for query, field in (
        ("offset=99999999999999999999", "offset"),
        ("offset=1000000001", "offset"),
        ("offset=-1", "offset"),
        ("offset=1_0", "offset"),
        ("offset=²", "offset"),
        ("limit=0", "limit"),
        ("limit=99999999999999999999", "limit"),
    ):
        r = client.get(f"/api/v1/employers?{query}", headers=staff)
        assert r.status_code == 422, (query, r.get_data(as_text=True)[:300])
        error = r.json["error"]
        assert error["code"] == "invalid_pagination" and error["field"] == field
        assert "nombre entier" in error["message"]


def test_employers_pagination_at_its_bounds_is_served(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    r = client.get("/api/v1/employers?offset=1000000000&limit=1000000", headers=staff)
    assert r.status_code == 200
    assert r.json["items"] == [] and r.json["offset"] == 1_000_000_000 and r.json["limit"] == 200


def test_archive_cursor_out_of_range_is_422(client: FlaskClient, staff: dict[str, str]) -> None:
    for after in ("99999999999999999999", str(ID_MAX + 1), "-1", "1_0", "²", "١"):
        r = client.get("/api/v1/archive", query_string={"cdg": "81", "after": after}, headers=staff)
        assert r.status_code == 422, (after, r.get_data(as_text=True)[:300])
        assert r.json["error"]["code"] == "invalid_pagination"
        assert r.json["error"]["field"] == "after"


def test_archive_cursor_at_its_bound_is_served(client: FlaskClient, staff: dict[str, str]) -> None:
    r = client.get(f"/api/v1/archive?cdg=81&after={ID_MAX}", headers=staff)
    assert r.status_code == 200 and r.json == {"items": [], "next": None}


# -- the portal page with a SIRET typed too long ---------------------------------------------


def test_portal_page_with_a_siret_typed_too_long_signs_in_without_a_token(
    app: Flask, client: FlaskClient, kit: dict[str, Any]
) -> None:
    with app.app_context():
        tokens_before = db.session.scalar(select(func.count(ApiToken.id)))
    r = client.post(
        "/portail",
        data={
            "siret": "218 100 048 00014 999",  # 17 digits: the first 14 are the SIRET
            "access_code": kit["access_code"],
            "csrf_token": csrf(client, "/portail"),
        },
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/portail/kit")
    assert client.get("/portail/kit").status_code == 200
    with app.app_context():
        assert db.session.scalars(select(WebSession.siret)).all() == [SIRET]
        # the page's session is the web session: no bearer token is issued and thrown away
        assert db.session.scalar(select(func.count(ApiToken.id))) == tokens_before


# -- issuing a kit with broken JSON ----------------------------------------------------------


@SQLITE
def test_issue_with_a_body_that_is_not_a_json_object_is_422_and_issues_nothing(
    client: FlaskClient, staff: dict[str, str], kit: dict[str, Any]
) -> None:
    url = f"/api/v1/employers/{SIRET}/kits"
    for body, content_type in (
        ('{"cover_starts_on": "2025-02-01",}', "application/json"),  # a trailing comma
        ("null", "application/json"),
        ("cover_starts_on=2025-02-01", "application/x-www-form-urlencoded"),
    ):
        r = client.post(url, data=body, content_type=content_type, headers=staff)
        assert r.status_code == 422, body
        assert r.json["error"]["code"] == "invalid_json"
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "issued"
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).json["kit"]["id"] == kit["id"]


# -- the upload quota under racing uploads ---------------------------------------------------


@pytest.fixture
def app_config() -> dict[str, str]:
    return {"UPLOAD_QUOTA_COUNT": "2", "UPLOAD_QUOTA_MB": "100"}


@POSTGRES
def test_racing_uploads_stay_within_the_hourly_quota(
    app: Flask, client: FlaskClient, kit: dict[str, Any], pki: Pki
) -> None:
    employer_auth = auth(portal(client, kit["access_code"]).json["token"])
    data = sign_pdf(issued_pdf(client, employer_auth, kit, PIECES[0]), pki.trusted)
    results: list[int] = []
    start = threading.Barrier(4)

    def send() -> None:
        with app.test_client() as c:
            start.wait(30)
            results.append(upload(c, employer_auth, kit, PIECES[0], data).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    # every upload passed the count before any row was committed: the count after the kit's
    # lock keeps two, the quota; the others leave no row
    assert sorted(results) == [201, 422, 429, 429]
    with app.app_context():
        assert db.session.scalar(select(func.count(KitReturn.id))) == 2
