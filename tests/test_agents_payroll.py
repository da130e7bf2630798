"""Payroll: the settings (JSON, PDF/A read back with pdftotext), the month's file against
hand-computed figures (two categories, an option, an arrival mid-year, departures), scoping.

Memberships are inserted directly (`add_membership`), their amounts computed by hand: the
registration of agents is another part of issue 11.
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import labels
from service.accounts.auth import issue_token
from service.agents.models import Membership
from service.audit.models import AuditEvent
from service.extensions import db
from service.reference.models import Convention, Employer
from tests.conftest import auth, create_token, employer_payload
from tests.pdftools import fold, xmp
from tests.test_pages import csrf

GAILLAC = "21810001400016"
ALBI = "21810004800014"
BY_CATEGORY = {
    "mode": "by_category",
    "amounts": {"A": "10.00", "B": "15.00", "C": "25.00"},
    "criteria": "Modulation selon la catégorie hiérarchique, après avis du CST.",
}


def add_membership(
    app: Flask,
    siret: str,
    *,
    reference: str,
    last_name: str,
    first_name: str,
    category: str,
    base: dict[str, str],
    premium: str,
    contribution: str,
    joins_on: date,
    options: list[str] | None = None,
    state: str = "active",
    left_on: date | None = None,
    email: str | None = None,
) -> int:
    """One membership row with amounts computed by hand; returns its id."""
    with app.app_context():
        employer = db.session.query(Employer).filter_by(siret=siret).one()
        total = sum((Decimal(v) for v in base.values()), Decimal("0.00"))
        m = Membership(
            reference=reference,
            employer_id=employer.id,
            convention_id=employer.convention_id,
            last_name=last_name,
            first_name=first_name,
            birth_date=date(1980, 5, 17),
            person_key=f"{last_name}|{first_name}|1980-05-17".lower(),
            email=email or f"{first_name}.{last_name}@exemple.fr".lower(),
            status="titulaire",
            category=category,
            base=base,
            options=options or [],
            joins_on=joins_on,
            base_amount=total,
            premium=Decimal(premium),
            employer_contribution=Decimal(contribution),
            employee_share=Decimal(premium) - Decimal(contribution),
            state=state,
            left_on=left_on,
            created_by=f"employer:{siret}",
        )
        db.session.add(m)
        db.session.commit()
        return m.id


def employer_token(app: Flask, siret: str) -> dict[str, str]:
    with app.app_context():
        token = issue_token(role="employer", siret=siret)
        db.session.commit()
    return auth(token)


@pytest.fixture
def gaillac(client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]) -> str:
    """An employer whose contribution depends on the category (A 10 €, B 15 €, C 25 €)."""
    r = client.post(
        "/api/v1/employers",
        json=employer_payload(
            convention["id"],
            siret=GAILLAC,
            name="Gaillac",
            email="rh@ville-gaillac.fr",
            contribution=BY_CATEGORY,
        ),
        headers=staff,
    )
    assert r.status_code == 201, r.json
    return GAILLAC


@pytest.fixture
def staffed(app: Flask, gaillac: str, employer: dict[str, Any]) -> dict[str, int]:
    """Five memberships at Gaillac (rate 2,30 %, « Décès » +0,30 %), one at Albi.

    Hand-computed, monthly:
    - Martin Anne, A, 2 500 + 300 (RI) = 2 800,00 → 64,40; contribution 10,00; share 54,40
    - Durand Paul, C, 1 500,00, option Décès 2,60 % → 39,00; contribution 25,00; share 14,00
    - Bernard Léa, B, arrives 1 June 2025, 1 800 + 150,55 = 1 950,55 → 44,86; 15,00; 29,86
    - Petit Marc, C, 900,00 → 20,70; contribution capped at 20,70; share 0,00; leaves 15 April
    - Roux Jean, A, 2 000,00 → 46,00; 10,00; 36,00; left 28 February 2025
    """
    ids = {
        "martin": add_membership(
            app,
            GAILLAC,
            reference="ADH-81-000001",
            last_name="Martin",
            first_name="Anne",
            category="A",
            base={"tbi": "2500.00", "nbi": "0.00", "ri": "300.00", "cti": "0.00"},
            premium="64.40",
            contribution="10.00",
            joins_on=date(2025, 1, 1),
        ),
        "durand": add_membership(
            app,
            GAILLAC,
            reference="ADH-81-000002",
            last_name="Durand",
            first_name="Paul",
            category="C",
            base={"tbi": "1500.00"},
            premium="39.00",
            contribution="25.00",
            joins_on=date(2025, 1, 1),
            options=["deces"],
            state="invited",
        ),
        "bernard": add_membership(
            app,
            GAILLAC,
            reference="ADH-81-000003",
            last_name="Bernard",
            first_name="Léa",
            category="B",
            base={"tbi": "1800.00", "ri": "150.55"},
            premium="44.86",
            contribution="15.00",
            joins_on=date(2025, 6, 1),
        ),
        "petit": add_membership(
            app,
            GAILLAC,
            reference="ADH-81-000004",
            last_name="Petit",
            first_name="Marc",
            category="C",
            base={"tbi": "900.00"},
            premium="20.70",
            contribution="20.70",
            joins_on=date(2025, 1, 1),
            state="left",
            left_on=date(2025, 4, 15),
        ),
        "roux": add_membership(
            app,
            GAILLAC,
            reference="ADH-81-000005",
            last_name="Roux",
            first_name="Jean",
            category="A",
            base={"tbi": "2000.00"},
            premium="46.00",
            contribution="10.00",
            joins_on=date(2025, 1, 1),
            state="left",
            left_on=date(2025, 2, 28),
        ),
        "albi": add_membership(
            app,
            "21810004800014",
            reference="ADH-81-000006",
            last_name="Albigeois",
            first_name="Zoé",
            category="B",
            base={"tbi": "2000.00"},
            premium="46.00",
            contribution="15.00",
            joins_on=date(2025, 1, 1),
        ),
    }
    return ids


def read_csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for French spreadsheets
    text = body.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text), delimiter=";"))


@pytest.mark.postgres
def test_payroll_csv_figures_match_hand_computed_ones_for_a_month_with_a_departure(
    client: FlaskClient, staff: dict[str, str], staffed: dict[str, int]
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.csv?month=2025-04", headers=staff)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert "cotisations-21810001400016-2025-04.csv" in r.headers["Content-Disposition"]
    rows = read_csv(r.data)
    # by name; Roux left before April; Bernard arrives in June; Albi's agent is not Gaillac's
    assert [row["Nom"] for row in rows] == ["Durand", "Martin", "Petit"]
    durand, martin, petit = rows
    assert martin == {
        "Référence d'adhésion": "ADH-81-000001",
        "Nom": "Martin",
        "Prénom": "Anne",
        "Catégorie": "A",
        "Code population": "CAT-A",
        "Date d'effet": "01/01/2025",
        "Date de sortie": "",
        "Assiette": "2800,00",
        "Taux": "2,30 %",
        "Cotisation": "64,40",
        "Participation employeur": "10,00",
        "Part agent": "54,40",
        "Options": "",
    }
    assert (durand["Taux"], durand["Cotisation"], durand["Part agent"]) == (
        "2,60 %",
        "39,00",
        "14,00",
    )
    assert durand["Options"] == "Décès"  # the label, never the code
    # leaves on 15 April: April is due in full, the contribution capped at the premium
    assert (petit["Date de sortie"], petit["Cotisation"]) == ("15/04/2025", "20,70")
    assert (petit["Participation employeur"], petit["Part agent"]) == ("20,70", "0,00")
    assert not any("Total" in value for row in rows for value in row.values())


@pytest.mark.postgres
def test_payroll_months_follow_arrivals_and_departures(
    client: FlaskClient, staff: dict[str, str], staffed: dict[str, int]
) -> None:
    def names(month: str) -> list[str]:
        r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.json?month={month}", headers=staff)
        assert r.status_code == 200, r.json
        return [row["last_name"] for row in r.json["rows"]]

    assert names("2024-12") == []
    assert names("2025-02") == ["Durand", "Martin", "Petit", "Roux"]  # Roux's last month
    assert names("2025-03") == ["Durand", "Martin", "Petit"]
    assert names("2025-05") == ["Durand", "Martin"]
    assert names("2025-06") == ["Bernard", "Durand", "Martin"]  # arrival on 1 June


def test_payroll_json_totals_are_the_sum_of_the_rows(
    client: FlaskClient, staff: dict[str, str], staffed: dict[str, int]
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.json?month=2025-04", headers=staff)
    assert r.json["count"] == 3
    # 64,40 + 39,00 + 20,70; 10,00 + 25,00 + 20,70; 54,40 + 14,00 + 0,00; 2 800 + 1 500 + 900
    assert r.json["totals"] == {
        "base": "5200.00",
        "premium": "124.10",
        "employer_contribution": "55.70",
        "employee_share": "68.40",
    }


@pytest.mark.parametrize("month", ["2025-13", "2025-3", "mars", "2025-00", "", "2025-04-01"])
def test_payroll_csv_bad_month_is_refused(
    client: FlaskClient, staff: dict[str, str], gaillac: str, month: str
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.csv?month={month}", headers=staff)
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_month"
    assert "AAAA-MM" in r.json["error"]["message"]


def test_payroll_csv_without_month_is_refused(
    client: FlaskClient, staff: dict[str, str], gaillac: str
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.csv", headers=staff)
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_month"


def test_payroll_of_another_employer_is_not_found(
    app: Flask, client: FlaskClient, staffed: dict[str, int]
) -> None:
    albi = employer_token(app, "21810004800014")
    for path in (
        f"/api/v1/employers/{GAILLAC}/payroll.csv?month=2025-04",
        f"/api/v1/employers/{GAILLAC}/payroll.json?month=2025-04",
        f"/api/v1/employers/{GAILLAC}/payroll-settings.json",
        f"/api/v1/employers/{GAILLAC}/payroll-settings.pdf",
    ):
        r = client.get(path, headers=albi)
        assert r.status_code == 404, path
        assert r.json["error"]["code"] == "unknown_employer"
    own = client.get("/api/v1/employers/21810004800014/payroll.csv?month=2025-04", headers=albi)
    assert [row["Nom"] for row in read_csv(own.data)] == ["Albigeois"]
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    assert (
        client.get(f"/api/v1/employers/{GAILLAC}/payroll-settings.json", headers=cdg).status_code
        == 403
    )


def blocks_of(settings: dict[str, Any]) -> dict[str, str]:
    return {d["block"]: d["value"] for d in settings["dsn"]}


def test_payroll_settings_json_names_what_the_dsn_needs(
    client: FlaskClient, staff: dict[str, str], gaillac: str
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll-settings.json", headers=staff)
    assert r.status_code == 200
    s = r.json
    # no kit yet: the convention's reference is the contract's
    assert s["contract"]["reference"] == "CDG81-PREV-2025-2030"
    assert s["contract"]["kit_reference"] is None
    assert s["insurer"]["name"] == "Allianz Vie" and s["manager"]["name"] == "Collecteam"
    assert [p["code"] for p in s["populations"]] == ["CAT-A", "CAT-B", "CAT-C"]
    assert [p["employer_contribution"] for p in s["populations"]] == ["10.00", "15.00", "25.00"]
    assert [(o["code"], o["dsn_code"], o["rate"]) for o in s["options"]] == [
        (None, "SOCLE", "2.30"),
        ("deces", "DECES", "0.30"),
        ("perte_retraite", "PERTE-RETRAITE", "0.45"),
    ]
    assert blocks_of(s)["S21.G00.70.004"] == "SOCLE / DECES / PERTE-RETRAITE"
    assert {b["code"] for b in s["base"]["included"]} == {"tbi", "nbi", "ri", "cti"}
    assert {b["code"] for b in s["base"]["excluded"]} == {"ir", "sft", "variable"}
    assert s["employer_contribution"]["capped_at_premium"] is True
    assert s["employer_contribution"]["prorated"] is False
    blocks = blocks_of(s)
    assert blocks["S21.G00.15.001"] == "CDG81-PREV-2025-2030"
    assert blocks["S21.G00.70.005"] == "CAT-A / CAT-B / CAT-C"
    assert s["contract"]["starts_on"] == "2025-01-01"


def test_payroll_settings_flat_scheme_has_one_population(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    s = client.get("/api/v1/employers/21810004800014/payroll-settings.json", headers=staff).json
    assert s["populations"] == [
        {"code": "ENSEMBLE", "label": "Ensemble du personnel", "employer_contribution": "15.00"}
    ]


def test_payroll_settings_name_the_insurer_as_the_kit_does_with_its_capital(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    with app.app_context():
        for convention in db.session.scalars(select(Convention)):
            convention.insurer_legal_form = None
            convention.insurer_capital = Decimal("681879255")
            convention.insurer_register = "340 234 962 RCS Nanterre"
        db.session.commit()
    s = client.get("/api/v1/employers/21810004800014/payroll-settings.json", headers=staff).json
    identification = s["insurer"]["identification"]
    assert identification.startswith("capital de 681"), identification
    assert "340 234 962 RCS Nanterre" in identification


def pdftotext(data: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.pdf"
        path.write_bytes(data)
        out = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True
        ).stdout
    return fold(out.decode("utf-8"))


def test_payroll_settings_pdf_is_pdfa_in_french_with_rates_and_amounts(
    app: Flask, client: FlaskClient, gaillac: str, artifacts: Path
) -> None:
    r = client.get(
        f"/api/v1/employers/{GAILLAC}/payroll-settings.pdf", headers=employer_token(app, GAILLAC)
    )
    assert r.status_code == 200
    assert r.mimetype == "application/pdf"
    assert "parametrage-paie-21810001400016.pdf" in r.headers["Content-Disposition"]
    text = pdftotext(r.data)
    for expected in (
        "Paramétrage de la paie",
        "Référence du contrat de prévoyance",
        "CDG81-PREV-2025-2030",
        "Allianz Vie",
        "Collecteam",
        "S21.G00.70.005",
        "Code population de rattachement",
        "Agents de catégorie B",
        "15,00 €",
        "25,00 €",
        "2,30 %",
        "0,45 %",
        "Perte de retraite",
        "1er janvier 2025",
        "Indemnité de résidence",
        "Supplément familial de traitement",
        "Nouvelle bonification indiciaire",
        "jamais un pourcentage",
        "plafonnée au montant de la cotisation",
        "n'est jamais proratisée",
        "Contrat collectif à adhésion facultative",
    ):
        assert expected in text, expected
    assert "PERTE-RETRAITE" in text
    for code in ("by_category", "None", "perte_retraite", "deces "):
        assert code not in text, code
    (artifacts / "payroll-settings.pdf").write_bytes(r.data)
    meta = xmp(r.data)
    assert "<pdfaid:part>2</pdfaid:part>" in meta or 'pdfaid:part="2"' in meta


@pytest.mark.parametrize("backend", ["sqlite"])
def test_portal_gives_the_payroll_files_and_the_kit_reference_is_the_contracts(
    app: Flask, client: FlaskClient, staff: dict[str, str], staffed: dict[str, int]
) -> None:
    kit = client.post(f"/api/v1/employers/{ALBI}/kits", headers=staff)
    assert kit.status_code == 201, kit.json
    settings = client.get(f"/api/v1/employers/{ALBI}/payroll-settings.json", headers=staff).json
    assert settings["contract"]["reference"] == kit.json["reference"]
    assert settings["contract"]["convention_reference"] == "CDG81-PREV-2025-2030"
    r = client.post(
        "/portail",
        data={
            "siret": ALBI,
            "access_code": kit.json["access_code"],
            "csrf_token": csrf(client, "/portail"),
        },
    )
    assert r.status_code == 302
    page = client.get("/portail/kit").get_data(as_text=True)
    assert "La paie" in page and "/portail/paie/cotisations.csv" in page
    rows = read_csv(client.get("/portail/paie/cotisations.csv?mois=2025-04").data)
    assert [(row["Nom"], row["Cotisation"]) for row in rows] == [("Albigeois", "46,00")]
    bad = client.get("/portail/paie/cotisations.csv?mois=avril")
    assert bad.status_code == 302 and bad.headers["Location"].endswith("/portail/kit#paie")
    assert "AAAA-MM" in client.get("/portail/kit").get_data(as_text=True)
    pdf = client.get("/portail/paie/parametrage.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert kit.json["reference"] in pdftotext(pdf.data)


@pytest.mark.parametrize("backend", ["postgres"])
def test_payroll_downloads_are_recorded_with_who_the_file_and_its_hash(
    app: Flask, client: FlaskClient, staffed: dict[str, int]
) -> None:
    headers = employer_token(app, GAILLAC)
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.csv?month=2025-04", headers=headers)
    pdf = client.get(f"/api/v1/employers/{GAILLAC}/payroll-settings.pdf", headers=headers)
    client.get(f"/api/v1/employers/{GAILLAC}/payroll.csv?month=2025-13", headers=headers)
    with app.app_context():
        events = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "downloaded").order_by(AuditEvent.id)
        ).all()
        assert [(e.details, e.siret, e.actor) for e in events] == [
            ({"file": "payroll.csv", "month": "2025-04"}, GAILLAC, f"employer:{GAILLAC}"),
            ({"file": "payroll-settings.pdf"}, GAILLAC, f"employer:{GAILLAC}"),
        ]  # the refused month downloaded nothing
        assert events[0].sha256_after == hashlib.sha256(r.data).hexdigest()
        assert events[1].sha256_after == hashlib.sha256(pdf.data).hexdigest()
    assert labels.file_label("payroll.csv") == "Fichier mensuel des cotisations des agents (CSV)"


def test_payroll_json_rows_carry_option_codes_and_amounts(
    client: FlaskClient, staff: dict[str, str], staffed: dict[str, int]
) -> None:
    r = client.get(f"/api/v1/employers/{GAILLAC}/payroll.json?month=2025-06", headers=staff)
    bernard, durand, _ = r.json["rows"]
    assert durand["options"] == ["deces"] and durand["rate"] == "2.60"
    assert (bernard["joins_on"], bernard["base"], bernard["premium"]) == (
        "2025-06-01",
        "1950.55",
        "44.86",
    )
    assert (bernard["population"], bernard["employee_share"]) == ("CAT-B", "29.86")
