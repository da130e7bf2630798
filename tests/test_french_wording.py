"""French as people read it: the employer's designation, long dates, amounts, agreement with the
number and with « pièce », no capital after a colon, the cancellation e-mail, no-break spaces
inside French quotes."""

from __future__ import annotations

import email
import io
import re
from datetime import datetime
from email import policy
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.backends import settings
from service.labels import piece_result, piece_state
from service.wording import after_colon, agree, counted, long_when
from tests.conftest import employer_payload, record_prerequisites, run_jobs
from tests.pdftools import pdf_text
from tests.pki import Pki, sign_pdf
from tests.test_pages import csrf, sign_in
from tests.test_pages_people import (
    OTHER,
    PIECES,
    SIRET,
    employer_token,
    events,
    issue,
    issued_pdf,
    portal_sign_in,
    upload,
    visible_text,
)

ROOT = Path(__file__).resolve().parent.parent
NBSP = "\u00a0"


def mails(app: Flask) -> list[email.message.EmailMessage]:
    run_jobs(app)
    with app.app_context():
        outbox = Path(settings().mail_url.removeprefix("file://"))
    found = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]
    return found  # type: ignore[return-value]


def test_long_when_reads_day_month_year_and_paris_time() -> None:
    # 15:43 UTC in November is 16:43 in Paris
    assert long_when(datetime(2026, 11, 22, 15, 43, 41)) == f"22 novembre 2026 à 16{NBSP}h{NBSP}43"
    assert long_when(datetime(2026, 7, 1, 7, 5)) == f"1er juillet 2026 à 9{NBSP}h{NBSP}05"
    assert long_when(None) == ""


def test_agreement_follows_the_number() -> None:
    assert f"{counted(12, 'employeur')} {agree(12, 'ajouté')}" == "12 employeurs ajoutés"
    assert f"{counted(1, 'employeur')} {agree(1, 'ajouté')}" == "1 employeur ajouté"
    assert f"{counted(0, 'relance')} {agree(0, 'envoyée')}" == "0 relance envoyée"


def test_after_colon_lowers_a_sentence_but_keeps_acronyms() -> None:
    assert after_colon("Le fichier n'est pas signé.") == "le fichier n'est pas signé."
    assert after_colon("PDF illisible.") == "PDF illisible."
    assert after_colon(None) == ""


def test_piece_states_agree_with_piece() -> None:
    assert (piece_state("accepted"), piece_state("refused")) == ("Acceptée", "Refusée")
    assert piece_result("pending_review") == "en cours d'examen par votre gestionnaire"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pages_and_email_name_the_employer_in_french(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    page = f"/employeurs/{SIRET}"
    r = client.post(f"{page}/kit", data={"csrf_token": csrf(client, page)})
    issued = visible_text(r.get_data(as_text=True))
    assert "Le kit de la commune d'Albi est prêt." in issued
    text = visible_text(client.get(page).get_data(as_text=True))
    assert "La commune d'Albi – Kits PSC" in text and "La commune d'Albi" in text
    assert "15,00 € par mois" in text and "15.00" not in text
    # « Émis le 22 novembre 2026 à 16 h 43 ; code d'accès valable jusqu'au … »
    months = "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"
    moment = rf"(1er|\d{{1,2}}) ({months}) \d{{4}} à \d{{1,2}} h \d{{2}}"
    assert re.search(rf"Émis le {moment} ; code d'accès valable jusqu'au {moment}\.", text), text
    assert not re.search(r"\d\d/\d\d/\d{4}", text.split("Retours signés")[0])
    body = mails(app)[-1].get_content()
    assert "Le kit contractuel" in body and "de la commune d'Albi est disponible" in body
    assert " de Albi" not in body


@pytest.mark.parametrize("backend", ["sqlite"])
def test_documents_and_email_name_an_agglomeration_in_full(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    payload = employer_payload(
        convention["id"],
        siret=OTHER,
        name="CA de Castres-Mazamet",
        kind="ca",
        email="rh@castres-mazamet.fr",
    )
    r = client.post("/api/v1/employers", json=payload, headers=staff)
    assert r.status_code == 201, r.json
    record_prerequisites(client.application, OTHER)
    kit = issue(client, staff, OTHER)
    pdf = client.get(
        f"/api/v1/kits/{kit['id']}/documents/special-conditions.pdf", headers=staff
    ).data
    text = " ".join(pdf_text(pdf))
    assert "l'adhésion de la communauté d'agglomération de Castres-Mazamet" in text
    assert "de CA de" not in text
    body = mails(app)[-1].get_content()
    assert "de la communauté d'agglomération de Castres-Mazamet" in body


@pytest.mark.parametrize("backend", ["sqlite"])
def test_simulator_prints_amounts_with_grouped_thousands(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    query = {"convention": convention["id"], "gross": "1500", "contribution": "15"}
    html = client.get("/simulateur", query_string=query).get_data(as_text=True)
    assert f"1{NBSP}500,00{NBSP}€" in html and f"34,50{NBSP}€" in html
    assert "1500,00" not in html


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("gross", "message"),
    [
        ("-5", "Le montant doit être positif"),
        ("abc", f"«{NBSP}15,00{NBSP}»"),
    ],
)
def test_simulator_errors_read_as_french_amounts(
    app: Flask, client: FlaskClient, convention: dict[str, Any], gross: str, message: str
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    query = {"convention": convention["id"], "gross": gross}
    html = client.get("/simulateur", query_string=query).get_data(as_text=True)
    assert message in html and "15.00" not in html and 'id="premium"' not in html


@pytest.mark.parametrize("backend", ["sqlite"])
def test_portal_history_agrees_with_piece_and_has_no_capital_after_colon(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    portal_sign_in(client, kit["access_code"])
    token = csrf(client, "/portail/kit")
    r = client.post(
        "/portail/retours/special-conditions",
        data={"csrf_token": token, "file": (io.BytesIO(b"%PDF-1.7\n"), "a.pdf")},
        content_type="multipart/form-data",
    )
    assert r.status_code in (200, 302, 303, 422), r.status_code
    text = visible_text(client.get("/portail/kit").get_data(as_text=True))
    assert "La commune d'Albi – état" in text
    assert "Refusée : " in text and not re.search(r"Refusée? : [A-Z][a-zé]", text), text
    assert "À revoir" not in text and "Refusé :" not in text


def test_french_quotes_hold_no_breaking_space() -> None:
    """« lu et approuvé » never leaves its closing quote alone on a line."""
    files = [
        *(ROOT / "service" / "templates").glob("*.html"),
        *(
            ROOT / "templates" / "html" / "default" / name
            for name in (
                "macros.html",
                "access-letter.html",
                "enrolment-form.html",
                "beneficiary-designation.html",
            )
        ),
    ]
    offenders = {
        f.name: re.findall(r"« | »", f.read_text())
        for f in files
        if f.name != "review.html" and re.search(r"« | »", f.read_text())
    }
    assert offenders == {}
    assert (
        f"«{NBSP}lu et approuvé{NBSP}»" in (ROOT / "templates/html/default/macros.html").read_text()
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cancelling_a_kit_emails_the_employer_in_french(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    r = client.post(
        f"/api/v1/kits/{kit['id']}/cancel", json={"reason": "Erreur de convention"}, headers=staff
    )
    assert r.status_code == 200, r.json
    mail = mails(app)[-1]
    assert mail["To"] == "rh@mairie-albi.fr"
    assert mail["Subject"] == f"Annulation du kit contractuel PSC prévoyance {kit['reference']}"
    body = mail.get_content()
    assert f"{kit['reference']} de la commune d'Albi a été annulé le " in body
    assert "erreur de convention" in body
    assert "ne fonctionne plus" in body and "nouveau kit" in body
    sent = [e for e in events(app, kit["id"]) if e[0] == "email_sent"]
    assert sent[-1][2]["subject"] == mail["Subject"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_portal_after_countersigning_shows_copies_not_upload_instructions(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], pki: Pki
) -> None:
    kit = issue(client, staff)
    headers = employer_token(client, kit["access_code"])
    for kind in PIECES:
        signed = sign_pdf(issued_pdf(client, headers, kit, kind), pki.trusted)
        assert upload(client, headers, kit, kind, signed).json["status"] == "accepted"
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code in (200, 201), r.json
    run_jobs(app)  # the archive copies, as a worker runs them
    portal_sign_in(client, kit["access_code"])
    html = client.get("/portail/kit").get_data(as_text=True)
    text = visible_text(html)
    assert "Les exemplaires signés des deux parties" in text
    assert "il n'y a plus rien à déposer" in text
    assert "Les pièces à nous retourner signées" not in text and 'type="file"' not in html
    links = lxml.html.fromstring(html).xpath("//ul[@id='countersigned']//a/@href")
    assert len(links) == len(PIECES)
    for href in links:
        r = client.get(href)
        assert r.status_code == 200 and r.data.startswith(b"%PDF")
        r.close()
    # the history states each piece's result in words that agree with « pièce »
    assert "Acceptée" in text and "Accepté " not in text
    # the CDG reads how long each archived copy is kept as a sentence, not dd/mm/yyyy
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    cdg = visible_text(client.get("/cdg").get_data(as_text=True))
    assert re.search(r"conservée jusqu'au (1er|\d{1,2}) [a-zéû]+ \d{4}", cdg), cdg
    assert not re.search(r"conservée jusqu'au \d\d/", cdg)
