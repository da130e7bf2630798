"""The CDG's follow-up of agents: counts and amounts per employer against hand-computed figures,
progress per month, scoping between CDGs, and no personal data (API and page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.accounts.auth import create_user
from service.extensions import db
from tests.conftest import auth, create_token
from tests.test_agents_payroll import (  # noqa: F401  (fixtures)
    GAILLAC,
    employer_token,
    gaillac,
    staffed,
)
from tests.test_e2e import Session
from tests.test_e2e import browser as browser  # a fixture
from tests.test_e2e import live as live  # a fixture
from tests.test_pages import sign_in

#: what the memberships of `staffed` carry that identifies a person
#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


PERSONAL = (
    "Martin",
    "Anne",
    "Durand",
    "Bernard",
    "Léa",
    "Petit",
    "Roux",
    "Albigeois",
    "Zoé",
    "@exemple.fr",
    "1980-05-17",
    "17/05/1980",
    "ADH-81-",
)


def summary(client: FlaskClient, headers: dict[str, str], month: str = "2025-04") -> Any:
    r = client.get(f"/api/v1/cdgs/81/agents-summary?month={month}", headers=headers)
    assert r.status_code == 200, r.json
    return r.json


@pytest.mark.usefixtures("staffed")
def test_agents_summary_counts_and_amounts_match_hand_computed_ones(
    client: FlaskClient,
    staff: dict[str, str],
) -> None:
    s = summary(client, staff)
    assert s["month"] == "2025-04"
    albi, gaillac_ = s["employers"]  # by name
    assert (albi["name"], gaillac_["siret"]) == ("Albi", GAILLAC)
    assert gaillac_["agents"] == {"invited": 1, "active": 2, "left": 2}
    assert gaillac_["options"] == [
        {"code": "deces", "label": "Décès", "count": 1},
        {"code": "perte_retraite", "label": "Perte de retraite", "count": 0},
    ]
    # April: Martin 64,40, Durand 39,00, Petit 20,70 (leaves on the 15th: due in full)
    assert gaillac_["memberships_due"] == 3
    assert gaillac_["premiums"] == "124.10"
    assert gaillac_["employer_contributions"] == "55.70"
    assert gaillac_["employee_shares"] == "68.40"
    # 1,10 % of 124,10 = 1,3651
    assert (gaillac_["cdg_fee_rate"], gaillac_["cdg_fee"]) == ("1.10", "1.37")
    # Albi: one agent, 46,00 → 0,506
    assert (albi["premiums"], albi["cdg_fee"]) == ("46.00", "0.51")
    # the year so far: January and February 170,10 (Roux still there), March and April 124,10
    # = 588,40, 1,10 % = 6,4724; Albi 4 × 46,00 = 184,00 → 2,024
    assert (gaillac_["premiums_year"], gaillac_["cdg_fee_year"]) == ("588.40", "6.47")
    assert (albi["premiums_year"], albi["cdg_fee_year"]) == ("184.00", "2.02")
    assert s["totals"] == {
        "agents": {"invited": 1, "active": 3, "left": 2},
        "premiums": "170.10",
        "employer_contributions": "70.70",
        "cdg_fee": "1.88",
        "premiums_year": "772.40",
        "cdg_fee_year": "8.49",
    }


@pytest.mark.usefixtures("staffed")
def test_agents_summary_progress_counts_memberships_due_each_month(
    client: FlaskClient,
    staff: dict[str, str],
) -> None:
    gaillac_ = summary(client, staff, "2025-07")["employers"][1]
    assert [(p["month"], p["memberships"]) for p in gaillac_["progress"]] == [
        ("2025-01", 4),
        ("2025-02", 4),  # Roux leaves on 28 February
        ("2025-03", 3),
        ("2025-04", 3),  # Petit leaves on 15 April
        ("2025-05", 2),
        ("2025-06", 3),  # Bernard arrives on 1 June
        ("2025-07", 3),
    ]


@pytest.mark.usefixtures("staffed")
def test_agents_summary_has_no_personal_data(
    app: Flask,
    client: FlaskClient,
) -> None:
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    r = client.get("/api/v1/cdgs/81/agents-summary?month=2025-04", headers=cdg)
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "Gaillac" in text  # employers are named, people are not
    for personal in PERSONAL:
        assert personal not in text, personal


@pytest.mark.usefixtures("staffed")
def test_agents_summary_of_another_cdg_is_not_found(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
) -> None:
    other = {"code": "82", "name": "Centre de gestion de Tarn-et-Garonne", "email": "a@cdg82.fr"}
    assert client.post("/api/v1/cdgs", json=other, headers=staff).status_code == 201
    cdg82 = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    r = client.get("/api/v1/cdgs/81/agents-summary", headers=cdg82)
    assert r.status_code == 404
    assert r.json["error"]["code"] == "unknown_cdg"
    own = client.get("/api/v1/cdgs/82/agents-summary", headers=cdg82)
    assert own.status_code == 200 and own.json["employers"] == []
    employer = employer_token(app, GAILLAC)
    assert client.get("/api/v1/cdgs/81/agents-summary", headers=employer).status_code == 403


@pytest.mark.usefixtures("staffed")
def test_agents_summary_bad_month_is_refused(
    client: FlaskClient,
    staff: dict[str, str],
) -> None:
    r = client.get("/api/v1/cdgs/81/agents-summary?month=2025-13", headers=staff)
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_month"


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.usefixtures("staffed")
def test_cdg_agents_page_shows_counts_and_amounts_without_names(
    app: Flask,
    client: FlaskClient,
) -> None:
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    home = client.get("/cdg").get_data(as_text=True)
    assert "/cdg/adhesions" in home
    r = client.get("/cdg/adhesions?mois=2025-04")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    for expected in (
        "Adhésions des agents",
        "avril 2025",
        "Gaillac",
        "124,10\u00a0€",  # Gaillac's premiums
        "170,10\u00a0€",  # every employer's
        "1,37\u00a0€",
        "1,10\u00a0%",
        "Décès : 1",
        "Invités (compte non créé)",
    ):
        assert expected in page, expected
    for personal in PERSONAL:
        assert personal not in page, personal
    assert "Voir les agents" not in page  # the employers' agents are for staff
    bad = client.get("/cdg/adhesions?mois=avril").get_data(as_text=True)
    assert "AAAA-MM" in bad


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("staffed")
def test_cdg_agents_page_for_staff_links_to_each_employer(
    app: Flask,
    client: FlaskClient,
) -> None:
    sign_in(app, client, "production@cdg.fr")
    page = client.get("/cdg/adhesions?cdg=81&mois=2025-04").get_data(as_text=True)
    assert f"/employeurs/{GAILLAC}#agents" in page
    assert "Voir les agents" in page


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.usefixtures("staffed")
def test_cdg_agents_page_in_a_phone_browser_is_accessible(
    app: Flask, live: str, browser: Any, artifacts: Path
) -> None:
    with app.app_context():
        create_user(
            email="suivi@cdg81.fr", role="cdg", cdg_code="81", password="mot de passe cdg81"
        )
        db.session.commit()
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    phone = Session(browser, live, shots, width=390)
    page = phone.page
    phone.go("/cdg/adhesions")
    page.fill("#email", "suivi@cdg81.fr")
    page.fill("#password", "mot de passe cdg81")
    page.click("button[type=submit]")
    page.wait_for_url("**/cdg/adhesions")
    page.fill("#mois", "2025-04")
    page.click("text=Afficher")
    page.wait_for_url("**mois=2025-04")
    assert "124,10" in page.inner_text("main")
    phone.check_a11y("cdg-adhesions-agents")
    phone.close()
