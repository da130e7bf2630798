"""Importing agents from a CSV or XLSX file: all rows or none, every row's errors listed in French
with their line and column, duplicates inside the file, the template, active content refused."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from service.agents.models import ActivationLink, Membership
from service.agents.schemas import IMPORT_COLUMNS
from service.extensions import db
from tests.test_agents_register import JOINS, SIRET, agent_mails, count, joined
from tests.test_pages import csrf
from tests.test_pages_people import portal_sign_in, visible_text
from tests.test_reference_api import assert_error

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


IMPORT = f"/api/v1/employers/{SIRET}/agents/import"


@pytest.fixture
def signed(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    return joined(client, staff)


def row(n: int, **overrides: str) -> dict[str, str]:
    data = {
        "last_name": f"Agent{n:04d}",
        "first_name": "Camille",
        "birth_date": "1980-01-15",
        "email": f"agent{n}@example.fr",
        "status": "titulaire",
        "category": "C",
        "paid_by_hour_or_day": "non",
        "in_normal_service": "oui",
        "on_sick_leave": "non",
        "returned_on": "",
        "previous_collective_contract": "non",
        "has_individual_contract": "non",
        "tbi": "1500,00",
        "nbi": "0",
        "ri": "0",
        "cti": "0",
        "options": "",
        "joins_on": JOINS.isoformat(),
    }
    data.update(overrides)
    return data


def csv_bytes(rows: list[dict[str, str]], *, bom: bool = True) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(IMPORT_COLUMNS)
    for r in rows:
        writer.writerow([r[c] for c in IMPORT_COLUMNS])
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode("utf-8")


def xlsx_bytes(rows: list[dict[str, str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(list(IMPORT_COLUMNS))
    for r in rows:
        sheet.append([r[c] for c in IMPORT_COLUMNS])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def send(
    client: FlaskClient, headers: dict[str, str], data: bytes, name: str = "agents.csv"
) -> Any:
    return client.post(
        IMPORT,
        data={"file": (io.BytesIO(data), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_import_is_all_or_nothing_and_lists_every_error(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    rows = [row(n) for n in range(1, 1001)]
    # line 731 of the file (the header is line 1) is the 730th agent: on sick leave
    rows[729] = row(730, on_sick_leave="oui")
    rows[99] = row(100, tbi="mille", joins_on="2026-13-01")
    rows[499] = row(5, first_name="Camille")  # line 501: the same person as line 6
    r = send(client, employer, csv_bytes(rows))
    assert_error(r, 422, "import_rejected")
    errors = r.json["error"]["errors"]
    assert {(e["row"], e["field"], e["code"]) for e in errors} == {
        (101, "tbi", "invalid_amount"),
        (101, "joins_on", "invalid_field"),
        (501, "last_name", "duplicate_agent"),
        (731, "on_sick_leave", "agent_on_sick_leave"),
    }
    assert all(e["message"][0].isupper() for e in errors)
    assert "ligne 6 du fichier" in next(e["message"] for e in errors if e["row"] == 501)
    assert count(app, Membership) == 0 and count(app, ActivationLink) == 0
    assert agent_mails(app) == []
    # corrected, the whole file goes in: one membership, one link and one e-mail per row
    rows[729], rows[99], rows[499] = row(730), row(100), row(500)
    r = send(client, employer, csv_bytes(rows))
    assert r.status_code == 201, r.json
    assert r.json["count"] == 1000
    assert r.json["items"][0]["reference"] == "ADH-81-000001"
    assert r.json["items"][-1]["reference"] == "ADH-81-001000"
    assert {i["premium"] for i in r.json["items"]} == {"34.50"}
    assert count(app, Membership) == 1000 and count(app, ActivationLink) == 1000
    mails = agent_mails(app)
    assert len(mails) == 1000 and {m.payload["to"] for m in mails} == {
        f"agent{n}@example.fr" for n in range(1, 1001)
    }
    # importing it again: every row is a duplicate of an open membership
    again = send(client, employer, csv_bytes(rows[:3]))
    assert_error(again, 422, "import_rejected")
    assert [e["code"] for e in again.json["error"]["errors"]] == ["duplicate_agent"] * 3


def test_import_reads_xlsx_french_dates_and_amounts_with_a_dot_or_comma(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    rows = [
        row(1, tbi="1 500,00", options="deces"),
        row(2, tbi="1200.5", nbi="99.50", birth_date="15/01/1980", category="A"),
        row(3, has_individual_contract="oui", joins_on=JOINS.strftime("%d/%m/%Y")),
    ]
    r = send(client, employer, xlsx_bytes(rows), "agents.xlsx")
    assert r.status_code == 201, r.json
    items = {i["last_name"]: i for i in r.json["items"]}
    assert items["Agent0001"]["premium"] == "39.00"  # 1 500 € × 2,60 %
    assert items["Agent0002"]["base_amount"] == "1300.00"
    assert items["Agent0002"]["premium"] == "29.90"
    assert items["Agent0003"]["has_individual_contract"] is True
    assert count(app, Membership) == 3


def test_import_refuses_wrong_columns_macros_and_other_formats(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    wrong = csv_bytes([row(1)]).replace(b"last_name", b"nom")
    r = send(client, employer, wrong)
    assert_error(r, 422, "import_columns", "file")
    assert "last_name" in r.json["error"]["message"] and "nom" in r.json["error"]["message"]
    # an XLSX carrying a VBA project (saved as .xlsm and renamed)
    book = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx_bytes([row(1)]))) as src,
        zipfile.ZipFile(book, "w") as dst,
    ):
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")
    assert_error(send(client, employer, book.getvalue(), "a.xlsx"), 422, "import_active_content")
    # a part that unpacks to more than 50 MB (a "zip bomb")
    bomb = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx_bytes([row(1)]))) as src,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/media/padding.xml", b"\0" * (51 * 1024 * 1024))
    assert len(bomb.getvalue()) < 1024 * 1024
    assert_error(send(client, employer, bomb.getvalue(), "a.xlsx"), 422, "import_too_large")
    assert_error(send(client, employer, b"%PDF-1.7\n", "a.csv"), 422, "import_format")
    assert_error(send(client, employer, "é;à".encode("latin-1"), "a.csv"), 422, "import_encoding")
    assert_error(send(client, employer, csv_bytes([])), 422, "import_empty")
    no_file = client.post(IMPORT, data={}, headers=employer, content_type="multipart/form-data")
    assert_error(no_file, 422, "file_missing", "file")
    assert count(app, Membership) == 0


def test_import_templates_have_exactly_the_columns_and_import_as_they_are(
    app: Flask, client: FlaskClient, signed: tuple[dict[str, Any], dict[str, str]]
) -> None:
    _, employer = signed
    r = client.get("/api/v1/agents/import-template.csv", headers=employer)
    text = r.data.decode("utf-8")
    assert text.startswith("\ufeff")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    assert tuple(lines[0]) == IMPORT_COLUMNS and len(lines) == 2
    x = client.get("/api/v1/agents/import-template.xlsx", headers=employer)
    sheet = load_workbook(io.BytesIO(x.data), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert tuple(values[0]) == IMPORT_COLUMNS and len(values) == 2
    # the example row is a valid agent (its start of cover moved into the kit's period)
    example = dict(zip(IMPORT_COLUMNS, lines[1], strict=True), joins_on=JOINS.isoformat())
    assert send(client, employer, csv_bytes([example], bom=False)).status_code == 201


# -- the portal's import page and departures -----------------------------------------------------


def test_portal_import_lists_row_and_column_errors_then_records_all(
    app: Flask,
    client: FlaskClient,
    signed: tuple[dict[str, Any], dict[str, str]],
) -> None:
    kit, _ = signed
    browser = app.test_client()
    assert portal_sign_in(browser, kit["access_code"]).status_code == 302
    page = browser.get("/portail/agents/import")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Télécharger le modèle CSV" in html and "Télécharger le modèle XLSX" in html
    template = browser.get("/portail/agents/modele.xlsx")
    sheet = load_workbook(io.BytesIO(template.data), read_only=True).worksheets[0]
    assert next(sheet.iter_rows(values_only=True)) == IMPORT_COLUMNS
    rows = [row(1), row(2, email="pas-un-courriel", paid_by_hour_or_day="oui"), row(3)]
    sent = browser.post(
        "/portail/agents/import",
        data={
            "csrf_token": csrf(browser, "/portail/agents/import"),
            "file": (io.BytesIO(csv_bytes(rows)), "agents.csv"),
        },
        content_type="multipart/form-data",
    )
    text = visible_text(sent.get_data(as_text=True))
    assert "Import refusé, rien n'a été enregistré : 1 erreur sur 1 ligne" in text
    # the table of errors: line, column (its French name and its header in the file), message
    assert "3Courriel (colonne « email »)Adresse électronique invalide." in text
    assert count(app, Membership) == 0
    rows[1] = row(2)
    sent = browser.post(
        "/portail/agents/import",
        data={
            "csrf_token": csrf(browser, "/portail/agents/import"),
            "file": (io.BytesIO(xlsx_bytes(rows)), "agents.xlsx"),
        },
        content_type="multipart/form-data",
    )
    assert sent.status_code == 302 and count(app, Membership) == 3
    listing = visible_text(browser.get("/portail/agents?q=agent0002").get_data(as_text=True))
    assert "Agent0002 Camille" in listing and "Agent0001" not in listing
    # a departure from the list, with its date; the export says it in French
    with app.app_context():
        first = db.session.scalar(select(Membership).order_by(Membership.id))
        first_id, joins_on = first.id, first.joins_on
    gone = browser.post(
        f"/portail/agents/{first_id}/depart",
        data={
            "csrf_token": csrf(browser, "/portail/agents"),
            "left_on": joins_on.isoformat(),  # not yet covered: leaves on its start of cover
            "reason": "Mutation",
        },
    )
    assert gone.status_code == 302
    flashed = visible_text(browser.get("/portail/agents?etat=left").get_data(as_text=True))
    assert "Départ de Camille Agent0001 enregistré" in flashed and "Agent0002" not in flashed
    export = browser.get("/portail/agents/export.csv").data.decode("utf-8")
    assert "Terminée (départ);" in export and "Mutation" in export
    assert "left" not in export.split("\r\n", 1)[1]
