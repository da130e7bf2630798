"""Registering agents (issue 11): each eligibility rule with its bad input, the amounts against
hand-computed figures, the e-mail queued per membership, departures, scoping between two
employers, the export, the filled-in BAI read back (pdftk-java) and the portal form in Chromium."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select
from werkzeug.serving import make_server

from service.agents.models import ActivationLink, Membership
from service.agents.notify import activation_token_hash
from service.audit.models import AuditEvent
from service.engine.models import Job
from service.extensions import db
from service.kits import lifecycle
from service.kits.models import Kit
from service.mail.queue import mail_body
from service.reference.models import Convention, Employer
from tests.conftest import auth, employer_payload, record_prerequisites
from tests.test_agents_space import activate
from tests.test_e2e import ARGS, CHROMIUM, Session
from tests.test_reference_api import assert_error
from tests.test_returns import SIRET, issued_pdf, portal

OTHER_SIRET = "21810065900018"  # Castres


def first_of_month(months_ahead: int) -> date:
    day = date.today().replace(day=1)
    for _ in range(months_ahead):
        day = (day + timedelta(days=32)).replace(day=1)
    return day


#: inside the convention, after any kit issued today
JOINS = first_of_month(2)


def agent(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "last_name": "Durand",
        "first_name": "Élise",
        "birth_date": "1985-04-12",
        "email": "elise.durand@example.fr",
        "status": "titulaire",
        "category": "B",
        "paid_by_hour_or_day": False,
        "in_normal_service": True,
        "on_sick_leave": False,
        "returned_on": None,
        "previous_collective_contract": False,
        "has_individual_contract": False,
        "base": {"tbi": "1500.00"},
        "options": [],
        "joins_on": JOINS.isoformat(),
    }
    data.update(overrides)
    return data


def issue_kit(client: FlaskClient, staff: dict[str, str], siret: str = SIRET) -> dict[str, Any]:
    record_prerequisites(client.application, siret)
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def mark_signed(app: Flask, kit_id: int) -> None:
    """The employer's pieces are accepted (the returns' own tests sign them for real)."""
    with app.app_context():
        lifecycle.mark_employer_signed(db.session.get(Kit, kit_id))
        db.session.commit()


def joined(
    client: FlaskClient, staff: dict[str, str], siret: str = SIRET
) -> tuple[dict[str, Any], dict[str, str]]:
    """Issue a kit, have its pieces signed: the kit and the employer's token."""
    kit = issue_kit(client, staff, siret)
    token = portal(client, kit["access_code"], siret=siret)
    assert token.status_code == 200, token.json
    mark_signed(client.application, kit["id"])
    return kit, auth(token.json["token"])


@pytest.fixture
def signed(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    return joined(client, staff)


def register(client: FlaskClient, headers: dict[str, str], siret: str = SIRET, **kw: Any) -> Any:
    return client.post(f"/api/v1/employers/{siret}/agents", json=agent(**kw), headers=headers)


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model)) or 0


def agent_mails(app: Flask) -> list[Job]:
    """E-mails queued to agents (the kit's own e-mails go to the employer)."""
    with app.app_context():
        jobs = db.session.scalars(select(Job).where(Job.task == "psc.mail.send")).all()
        db.session.expunge_all()
    return [j for j in jobs if "/adherent/activation" in j.payload["body"]]


# -- amounts and what a registration writes ---------------------------------------------------


@pytest.mark.postgres
def test_register_design_example_amounts_and_queues_the_email(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    kit, employer = signed
    r = register(client, employer)
    assert r.status_code == 201, r.json
    body = r.json
    # DESIGN.md: 1 500 € at 2,30 % → 34,50 €; with a 15 € contribution the agent pays 19,50 €
    assert (body["premium"], body["employer_contribution"], body["employee_share"]) == (
        "34.50",
        "15.00",
        "19.50",
    )
    assert body["state"] == "invited" and body["status"] == "titulaire"
    assert body["reference"] == "ADH-81-000001"
    second = register(client, employer, last_name="Martin", email="paul.martin@example.fr")
    assert second.json["reference"] == "ADH-81-000002"
    with app.app_context():
        m = db.session.get(Membership, body["id"])
        assert m.kit_id == kit["id"] and m.created_by == f"employer:{SIRET}"
        assert m.base == {"tbi": "1500.00", "nbi": "0.00", "ri": "0.00", "cti": "0.00"}
        mails = db.session.scalars(select(Job).where(Job.task == "psc.mail.send")).all()
        to_elise = [j for j in mails if j.payload["to"] == "elise.durand@example.fr"]
        assert len(to_elise) == 1 and to_elise[0].status == "pending"
        assert "ADH-81-000001" in to_elise[0].payload["body"]
        assert "/adherent/activation?jeton=" in to_elise[0].payload["body"]
        link = db.session.scalar(select(ActivationLink).where(ActivationLink.membership_id == m.id))
        assert link is not None and link.used_at is None
        assert "jeton=⟦secret⟧" in to_elise[0].payload["body"]  # the token kept apart
        token = mail_body(to_elise[0].payload).split("jeton=")[1].split()[0]
        assert token not in link.token_hash  # only the hash is kept
        assert activation_token_hash(token) == link.token_hash
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "membership_registered")
        ).all()
        assert [e.details["reference"] for e in events] == ["ADH-81-000001", "ADH-81-000002"]


def test_register_counts_included_elements_options_and_never_ir_or_sft(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    r = register(
        client,
        employer,
        base={
            "tbi": "1200,00",
            "nbi": "100",
            "ri": "150.50",
            "cti": "49.50",
            "ir": "36",
            "sft": "80",
        },
        options=["deces", "perte_retraite"],
    )
    assert r.status_code == 201, r.json
    # base 1 500 € (no IR, no SFT), rate 2,30 + 0,30 + 0,45 = 3,05 % → 45,75 €; 15 € paid → 30,75 €
    assert r.json["base_amount"] == "1500.00"
    assert (r.json["premium"], r.json["employer_contribution"], r.json["employee_share"]) == (
        "45.75",
        "15.00",
        "30.75",
    )
    assert r.json["options"] == ["deces", "perte_retraite"]


def test_register_caps_the_contribution_at_the_premium_never_prorated(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    r = register(client, employer, base={"tbi": "500"})  # 11,50 € premium, part-time or not
    assert (r.json["premium"], r.json["employer_contribution"], r.json["employee_share"]) == (
        "11.50",
        "11.50",
        "0.00",
    )


def test_register_uses_the_contribution_of_the_agents_category(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    scheme = {
        "mode": "by_category",
        "amounts": {"A": "10.00", "B": "15.00", "C": "20.00"},
        "criteria": "Catégorie hiérarchique de l'agent",
    }
    payload = employer_payload(convention["id"], contribution=scheme)
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    _, employer = joined(client, staff)
    c = register(client, employer, category="C", base={"tbi": "2000"})  # 46,00 €
    assert (c.json["employer_contribution"], c.json["employee_share"]) == ("20.00", "26.00")
    a = register(client, employer, category="A", last_name="Morel", base={"tbi": "2000"})
    assert (a.json["employer_contribution"], a.json["employee_share"]) == ("10.00", "36.00")


def test_preview_computes_and_writes_nothing(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    r = client.post(f"/api/v1/employers/{SIRET}/agents/preview", json=agent(), headers=employer)
    assert r.status_code == 200, r.json
    assert (r.json["premium"], r.json["employee_share"]) == ("34.50", "19.50")
    assert count(app, Membership) == 0 and agent_mails(app) == []


# -- eligibility: each rule with its bad input --------------------------------------------------

REFUSALS = [
    ({"in_normal_service": False}, "agent_not_in_normal_service", "in_normal_service"),
    ({"paid_by_hour_or_day": True}, "agent_paid_by_hour_or_day", "paid_by_hour_or_day"),
    ({"on_sick_leave": True}, "agent_on_sick_leave", "on_sick_leave"),
    (
        {"returned_on": (JOINS - timedelta(days=10)).isoformat()},
        "agent_return_too_recent",
        "returned_on",
    ),
    (
        {
            "returned_on": (JOINS + timedelta(days=3)).isoformat(),
            "previous_collective_contract": True,
        },
        "agent_return_too_recent",
        "returned_on",
    ),
    ({"joins_on": JOINS.replace(day=15).isoformat()}, "joins_on_not_first_of_month", "joins_on"),
    ({"joins_on": "2031-01-01"}, "joins_on_outside_convention", "joins_on"),
    ({"joins_on": "2025-01-01"}, "joins_on_before_cover", "joins_on"),
    ({"options": ["obseques"]}, "unknown_option", "options"),
    ({"base": {"tbi": "0"}}, "missing_base", "base.tbi"),
    ({"base": {"tbi": "-5"}}, "invalid_amount", "tbi"),
    ({"birth_date": "2020-01-01"}, "invalid_birth_date", "birth_date"),
    ({"status": "vacataire"}, "invalid_field", "status"),
    ({"email": "pas-un-courriel"}, "invalid_field", "email"),
]


@pytest.mark.parametrize(
    ("change", "code", "field"), REFUSALS, ids=[r[1] + "-" + r[2] for r in REFUSALS]
)
def test_register_refuses_an_ineligible_agent_with_its_code(
    app: Flask,
    client: FlaskClient,
    signed: tuple[dict[str, Any], dict[str, str]],
    change: dict[str, Any],
    code: str,
    field: str,
) -> None:
    _, employer = signed
    assert_error(register(client, employer, **change), 422, code, field)
    assert count(app, Membership) == 0 and count(app, ActivationLink) == 0
    assert agent_mails(app) == []


def test_register_accepts_returns_old_enough_and_an_individual_contract(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    back_30 = register(client, employer, returned_on=(JOINS - timedelta(days=30)).isoformat())
    assert back_30.status_code == 201, back_30.json
    # covered by a collective contract before: from the effective return
    back_now = register(
        client,
        employer,
        last_name="Roux",
        returned_on=JOINS.isoformat(),
        previous_collective_contract=True,
    )
    assert back_now.status_code == 201, back_now.json
    individual = register(client, employer, last_name="Blanc", has_individual_contract=True)
    assert individual.status_code == 201 and individual.json["has_individual_contract"] is True


@pytest.mark.postgres
def test_register_refuses_a_duplicate_but_not_the_same_person_elsewhere(
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    signed: tuple[dict[str, Any], dict[str, str]],
) -> None:
    _, albi = signed
    assert register(client, albi).status_code == 201
    # accents, case and spaces do not make another person
    again = register(client, albi, last_name="  DURAND ", first_name="elise")
    assert_error(again, 409, "duplicate_agent")
    other = employer_payload(
        convention["id"], siret=OTHER_SIRET, name="Castres", email="rh@castres.fr"
    )
    assert client.post("/api/v1/employers", json=other, headers=staff).status_code == 201
    _, castres = joined(client, staff, OTHER_SIRET)
    assert register(client, castres, siret=OTHER_SIRET).status_code == 201


def test_register_refuses_until_every_piece_is_signed(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    assert_error(register(client, staff), 409, "employer_not_joined")  # no kit at all
    kit = issue_kit(client, staff)
    token = auth(portal(client, kit["access_code"]).json["token"])
    assert_error(register(client, token), 409, "employer_not_joined")  # issued, not signed
    mark_signed(app, kit["id"])
    assert register(client, token).status_code == 201


def test_mandatory_regime_needs_half_the_minimum_premium(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    with app.app_context():
        for c in db.session.scalars(select(Convention)):
            c.regime = "mandatory"
        db.session.commit()
    # 1 500 € → 34,50 € of minimum guarantees: 15 € is under half (17,25 €), options aside
    r = register(client, employer, options=["deces"])
    assert_error(r, 422, "contribution_below_half")
    assert register(client, employer, base={"tbi": "1300"}).status_code == 201  # 29,90 / 2 ≤ 15
    # on sick leave on the start date: bound after 30 days back, even with a contract before
    late = register(
        client,
        employer,
        last_name="Petit",
        base={"tbi": "1300"},
        returned_on=(JOINS - timedelta(days=5)).isoformat(),
        previous_collective_contract=True,
    )
    assert_error(late, 422, "agent_return_too_recent", "returned_on")


def test_mandatory_regime_accepts_a_contribution_under_7_euros_covering_half(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    with app.app_context():
        for c in db.session.scalars(select(Convention)):
            c.regime = "mandatory"
        row = db.session.scalar(select(Employer).where(Employer.siret == SIRET))
        row.contribution = {"mode": "flat", "amount": "5.00"}
        db.session.commit()
    # 400 € → 9,20 € of minimum guarantees: 5 € covers more than half (4,60 €)
    r = register(client, employer, base={"tbi": "400"})
    assert r.status_code == 201, r.json
    assert (r.json["premium"], r.json["employer_contribution"]) == ("9.20", "5.00")
    # 1 000 € → 23,00 €: 5 € is under half (11,50 €)
    low = register(client, employer, last_name="Petit", base={"tbi": "1000"})
    assert_error(low, 422, "contribution_below_half")
    assert "11,50" in low.json["error"]["message"]


# -- the list, departures, scoping, export -----------------------------------------------------


@pytest.mark.postgres
def test_list_search_leave_and_register_again(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    first = register(client, employer).json
    register(client, employer, last_name="Martin", first_name="Paul", email="p.martin@example.fr")
    url = f"/api/v1/employers/{SIRET}/agents"
    assert client.get(url, headers=employer).json["total"] == 2
    found = client.get(url + "?q=mart", headers=employer).json
    assert [i["last_name"] for i in found["items"]] == ["Martin"]
    leave = f"/api/v1/agents/{first['id']}/leave"
    early = client.post(
        leave, json={"left_on": "2025-01-01", "reason": "Mutation"}, headers=employer
    )
    assert_error(early, 422, "left_before_joining", "left_on")
    # a departure far ahead is not recorded yet (the state would say « left » at once)
    far = (JOINS + timedelta(days=40)).isoformat()
    too_far = client.post(leave, json={"left_on": far, "reason": "Mutation"}, headers=employer)
    assert_error(too_far, 422, "left_on_too_far", "left_on")
    assert client.get(f"/api/v1/agents/{first['id']}", headers=employer).json["state"] != "left"
    # leaving when the cover would start (not yet covered) stays possible
    left_on = JOINS.isoformat()
    r = client.post(leave, json={"left_on": left_on, "reason": "Mutation"}, headers=employer)
    assert r.status_code == 200 and r.json["state"] == "left" and r.json["left_on"] == left_on
    assert_error(
        client.post(leave, json={"left_on": left_on, "reason": "Mutation"}, headers=employer),
        409,
        "already_left",
    )
    assert [
        i["last_name"] for i in client.get(url + "?state=left", headers=employer).json["items"]
    ] == ["Durand"]
    assert_error(client.get(url + "?state=parti", headers=employer), 422, "invalid_state")
    # the departure frees the person: they may join again
    assert register(client, employer).status_code == 201


def test_leave_refuses_a_date_after_next_month_and_revokes_unused_links(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    first = register(client, employer).json
    with app.app_context():
        # already covered for a year: only the end of next month bounds the departure
        row = db.session.get(Membership, first["id"])
        row.joins_on = date(2025, 1, 1)
        db.session.commit()
    (mail,) = agent_mails(app)
    # the token as the e-mail carries it (kept apart from the stored body when passed as secret)
    token = re.search(r"jeton=([\w-]+)", mail_body(mail.payload)).group(1)  # type: ignore[union-attr]
    leave = f"/api/v1/agents/{first['id']}/leave"
    end_of_next_month = first_of_month(2) - timedelta(days=1)
    far = client.post(
        leave,
        json={"left_on": first_of_month(2).isoformat(), "reason": "Mutation"},
        headers=employer,
    )
    assert_error(far, 422, "left_on_too_far", "left_on")
    assert str(end_of_next_month.year) in far.json["error"]["message"]
    r = client.post(
        leave,
        json={"left_on": end_of_next_month.isoformat(), "reason": "Mutation"},
        headers=employer,
    )
    assert r.status_code == 200 and r.json["state"] == "left", r.json
    # the e-mailed link no longer opens an account
    assert_error(activate(client, token), 410, "activation_link_expired")


def test_employers_see_only_their_own_agents(
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    signed: tuple[dict[str, Any], dict[str, str]],
) -> None:
    _, albi = signed
    other = employer_payload(
        convention["id"], siret=OTHER_SIRET, name="Castres", email="rh@castres.fr"
    )
    assert client.post("/api/v1/employers", json=other, headers=staff).status_code == 201
    _, castres = joined(client, staff, OTHER_SIRET)
    mine = register(client, albi).json
    assert client.get(f"/api/v1/agents/{mine['id']}", headers=albi).status_code == 200
    assert client.get(f"/api/v1/agents/{mine['id']}", headers=staff).status_code == 200
    for response in (
        client.get(f"/api/v1/agents/{mine['id']}", headers=castres),
        client.post(
            f"/api/v1/agents/{mine['id']}/leave",
            json={"left_on": JOINS.isoformat(), "reason": "Essai"},
            headers=castres,
        ),
        client.get(f"/api/v1/employers/{SIRET}/agents", headers=castres),
        client.get(f"/api/v1/employers/{SIRET}/agents.csv", headers=castres),
        register(client, castres, siret=SIRET, last_name="Intrus"),
    ):
        assert response.status_code == 404, response.json
    assert client.get(f"/api/v1/employers/{OTHER_SIRET}/agents", headers=castres).json["total"] == 0


def test_export_is_french_csv_without_codes(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    register(client, employer, options=["deces"], category="C", status="contractuel")
    r = client.get(f"/api/v1/employers/{SIRET}/agents.csv", headers=employer)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    text = r.data.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    header, row = rows[0], dict(zip(rows[0], rows[1], strict=True))
    assert header[:3] == ["Référence", "Nom", "Prénom"]
    assert row["Statut"] == "Contractuel de droit public" and row["Catégorie"] == "Catégorie C"
    assert row["Options"] == "Décès" and row["État"] == "En attente d'activation du compte"
    assert row["Cotisation mensuelle"] == "39,00\u00a0€"  # 1 500 € × 2,60 %
    assert row["Date de naissance"] == "12 avril 1985"
    assert not {"invited", "contractuel", "deces"} & set(rows[1])


# -- the filled-in BAI, read back --------------------------------------------------------------


def test_filled_enrolment_form_registers_the_agent(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]], tmp_path: Path
) -> None:
    kit, employer = signed
    blank = tmp_path / "bai.pdf"
    blank.write_bytes(issued_pdf(client, employer, kit, "enrolment-form"))
    fdf = tmp_path / "values.xfdf"
    values = {
        "bai_nom": "Lefèvre",
        "bai_prenom": "Jeanne",
        "bai_naissance": "03/09/1979",
        "bai_courriel": "jeanne.lefevre@example.fr",
        "bai_categorie": "A",
        "bai_statut": "stagiaire",
        "bai_remuneration": "2 000,00",
        "bai_option_deces": "Yes",
    }
    fields = "".join(f'<field name="{k}"><value>{v}</value></field>' for k, v in values.items())
    fdf.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><xfdf xmlns="http://ns.adobe.com/xfdf/">'
        f"<fields>{fields}</fields></xfdf>",
        encoding="utf-8",
    )
    filled = tmp_path / "rempli.pdf"
    subprocess.run(
        ["pdftk", str(blank), "fill_form", str(fdf), "output", str(filled)],
        check=True,
        capture_output=True,
    )
    r = client.post(
        f"/api/v1/employers/{SIRET}/agents/from-form",
        data={"file": (io.BytesIO(filled.read_bytes()), "bai.pdf"), "joins_on": JOINS.isoformat()},
        headers=employer,
        content_type="multipart/form-data",
    )
    assert r.status_code == 201, r.json
    got = r.json
    assert (got["last_name"], got["first_name"], got["birth_date"]) == (
        "Lefèvre",
        "Jeanne",
        "1979-09-03",
    )
    assert (got["category"], got["status"], got["options"]) == ("A", "stagiaire", ["deces"])
    # 2 000 € × 2,60 % = 52,00 €; 15 € paid → 37,00 €
    assert (got["premium"], got["employee_share"]) == ("52.00", "37.00")
    # the same form again is the same person
    again = client.post(
        f"/api/v1/employers/{SIRET}/agents/from-form",
        data={"file": (io.BytesIO(filled.read_bytes()), "bai.pdf")},
        headers=employer,
        content_type="multipart/form-data",
    )
    assert_error(again, 409, "duplicate_agent")
    # an empty BAI lists what is missing; another PDF is not a BAI
    empty = client.post(
        f"/api/v1/employers/{SIRET}/agents/from-form",
        data={"file": (io.BytesIO(blank.read_bytes()), "bai.pdf")},
        headers=employer,
        content_type="multipart/form-data",
    )
    assert_error(empty, 422, "invalid_form_field", "file")
    notice = issued_pdf(client, employer, kit, "information-notice")
    other = client.post(
        f"/api/v1/employers/{SIRET}/agents/from-form",
        data={"file": (io.BytesIO(notice), "notice.pdf")},
        headers=employer,
        content_type="multipart/form-data",
    )
    assert_error(other, 422, "not_an_enrolment_form", "file")


def _crafted_form(kids_of: Any) -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    kids_of(pdf)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _loop(pdf: pikepdf.Pdf) -> None:
    """A field that is its own kid, with non-dictionaries among its kids and the fields."""
    field = pdf.make_indirect(pikepdf.Dictionary(T=pikepdf.String("bai_nom")))
    field.Kids = pikepdf.Array([field, 42, pikepdf.Name("/Oops"), pikepdf.String("x")])
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array([field, 7]))


def _lattice(pdf: pikepdf.Pdf) -> None:
    """60 levels, each node twice the kid of the one above: 2⁶⁰ paths, 60 nodes."""
    node = pdf.make_indirect(pikepdf.Dictionary(T=pikepdf.String("bas")))
    for level in range(60):
        node = pdf.make_indirect(
            pikepdf.Dictionary(T=pikepdf.String(f"n{level}"), Kids=pikepdf.Array([node, node]))
        )
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array([node]))


def _crowd(pdf: pikepdf.Pdf) -> None:
    fields = [pdf.make_indirect(pikepdf.Dictionary(T=pikepdf.String(f"c{n}"))) for n in range(3000)]
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array(fields))


def test_crafted_enrolment_form_is_refused_without_hanging(
    client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    url = f"/api/v1/employers/{SIRET}/agents/from-form"

    def send(data: bytes) -> Any:
        return client.post(
            url,
            data={"file": (io.BytesIO(data), "bai.pdf"), "joins_on": JOINS.isoformat()},
            headers=employer,
            content_type="multipart/form-data",
        )

    started = time.monotonic()
    assert_error(send(_crafted_form(_loop)), 422, "invalid_form_field", "file")
    assert_error(send(_crafted_form(_lattice)), 422, "not_an_enrolment_form", "file")
    assert_error(send(_crafted_form(_crowd)), 422, "unreadable_file", "file")
    assert time.monotonic() - started < 30


# -- the portal's form in Chromium -------------------------------------------------------------


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def chromium() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_agent_journey_employer_registers_agent_activates_downloads_and_designates(
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    live_server: str,
    chromium: Any,
    artifacts: Path,
) -> None:
    kit, _ = joined(client, staff)
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    browser = Session(chromium, live_server, shots, width=390)  # a phone
    page = browser.page
    browser.go("/portail")
    page.fill("#siret", SIRET)
    page.fill("#access_code", kit["access_code"])
    page.click("button[type=submit]")
    page.click("nav >> text=Mes agents")
    page.wait_for_selector("h1:has-text('Mes agents')")
    assert "Aucun agent inscrit" in page.inner_text("main")
    page.click("text=Inscrire un agent")
    browser.check_a11y("agents-formulaire")
    page.fill("#last_name", "Durand")
    page.fill("#first_name", "Élise")
    page.fill("#birth_date", "1985-04-12")
    page.fill("#email", "elise.durand@example.fr")
    page.select_option("#status", "titulaire")
    page.select_option("#category", "B")
    page.fill("#tbi", "1 500,00")
    page.fill("#joins_on", JOINS.replace(day=15).isoformat())
    page.click("button:has-text('Vérifier la cotisation')")
    assert "premier jour d'un mois" in page.inner_text("#joins_on-error")
    assert page.evaluate("document.activeElement.id") == "joins_on"
    browser.check_a11y("agents-formulaire-erreur")
    page.fill("#joins_on", JOINS.isoformat())
    page.check("#option-deces")
    page.click("button:has-text('Vérifier la cotisation')")
    page.wait_for_selector("h1:has-text('Vérifier l')")
    text = page.inner_text("main").replace("\u00a0", " ")
    # 1 500 € at 2,30 + 0,30 % → 39,00 €; 15 € paid → 24,00 €
    assert page.inner_text("#quote-premium").replace("\u00a0", " ") == "39,00 €"
    assert page.inner_text("#quote-contribution").replace("\u00a0", " ") == "15,00 €"
    assert page.inner_text("#quote-share").replace("\u00a0", " ") == "24,00 €"
    assert "option décès" in text
    browser.check_a11y("agents-confirmation")
    assert count(client.application, Membership) == 0  # nothing recorded before confirming
    page.click("button:has-text('Enregistrer l')")
    page.wait_for_selector("h1:has-text('Mes agents')")
    row = page.inner_text("#agents").replace("\u00a0", " ")
    assert "Durand Élise" in row and "ADH-81-000001" in row
    assert "En attente d'activation" in row and "24,00 €" in row
    assert "enregistrée pour Élise Durand" in page.inner_text("main")
    browser.check_a11y("agents-liste")
    (mail,) = agent_mails(client.application)
    browser.close()

    # the agent: the e-mailed link, a password, the certificate, two beneficiaries
    token = re.search(r"jeton=([\w-]+)", mail_body(mail.payload)).group(1)  # type: ignore[union-attr]
    agent = Session(chromium, live_server, shots, width=390)
    page = agent.page
    agent.go(f"/adherent/activation?jeton={token}")
    page.fill("#password", "un mot de passe solide")
    page.fill("#confirmation", "un mot de passe solide")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/adherent")
    assert "39,00\u00a0€" in page.inner_text("main") and "ADH-81-000001" in page.inner_text("main")
    with page.expect_download() as download:
        page.click("text=Télécharger mon certificat d'adhésion (PDF)")
    certificate = subprocess.run(
        ["pdftotext", "-layout", download.value.path(), "-"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.replace("\u00a0", " ")
    assert "DURAND" in certificate and "ADH-81-000001" in certificate
    assert "39,00 €" in certificate and "24,00 €" in certificate
    page.click("text=Désigner mes bénéficiaires")
    page.check("#clause-specific")
    page.fill("#name-1", "Paul Durand")
    page.fill("#birth_date-1", "1984-02-03")
    page.select_option("#relationship-1", "conjoint")
    page.fill("#share-1", "60")
    page.fill("#name-2", "Léa Durand")
    page.fill("#birth_date-2", "2012-09-30")
    page.select_option("#relationship-2", "enfant")
    page.fill("#share-2", "40")
    assert page.inner_text("#total") == "100,00\u00a0%"
    page.click("text=Enregistrer ma désignation")
    page.wait_for_selector("text=Votre désignation de bénéficiaires est enregistrée.")
    agent.check_a11y("agent-beneficiaires")
    agent.close()
    with client.application.app_context():
        membership = db.session.scalar(select(Membership))
        assert membership is not None and membership.state == "active"
        links = db.session.scalars(
            select(ActivationLink).where(ActivationLink.membership_id == membership.id)
        ).all()
        assert len(links) == 1 and links[0].used_at is not None  # the link is spent
