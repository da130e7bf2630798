"""The CDG's published documents (issue 12): every one generated, downloaded and read back with
independent tools, cached per convention version, and the public page in Chromium."""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from docx import Document
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from pypdf import PdfReader

from service.backends import document_store
from service.kits import published as kits_published
from service.kits.published import fingerprint
from service.published.domain import (
    current_convention,
    get_public_cdg,
    publication,
    published_input,
    render_claim_name,
)
from service.published.domain import today as published_today
from service.ratelimit import limiter
from tests.conftest import CDG81, CONVENTION, auth, create_token
from tests.pdftools import fold, xmp
from tests.test_e2e import Session, browser, live  # noqa: F401  (fixtures)
from tests.test_pages import sign_in
from tests.test_reference_api import assert_error

KINDS = (
    "subscription-request",
    "enrolment-form",
    "premium-elements-list",
    "information-notice",
    "cst-referral-model",
    "deliberation-model",
    "termination-model",
)
DSC_FIELDS = {
    "dsc_denomination",
    "dsc_type",
    "dsc_siret",
    "dsc_adresse",
    "dsc_effectif",
    "dsc_courriel",
    "dsc_contact_nom",
    "dsc_contact_fonction",
    "dsc_contact_courriel",
    "dsc_contact_telephone",
    "dsc_mode",
    "dsc_montant_unique",
    "dsc_montant_a",
    "dsc_montant_b",
    "dsc_montant_c",
    "dsc_criteres",
    "dsc_date_saisine_cst",
    "dsc_date_avis_cst",
    "dsc_date_deliberation",
    "dsc_date_effet",
    "dsc_signataire",
    "dsc_qualite",
    "dsc_lieu",
    "dsc_date_signature",
}


def pdftotext(data: bytes) -> str:
    out = subprocess.run(
        ["pdftotext", "-", "-"], input=data, capture_output=True, check=True, timeout=60
    ).stdout
    return fold(out.decode())


def docx_text(data: bytes) -> str:
    document = Document(io.BytesIO(data))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    return fold("\n".join(parts))


@pytest.fixture
def published(client: FlaskClient, staff: dict[str, str]) -> dict[str, Any]:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    r = client.post("/api/v1/conventions", json=CONVENTION, headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def download(client: FlaskClient, kind: str, code: str = "81") -> bytes:
    r = client.get(f"/api/v1/cdgs/{code}/documents/{kind}")
    assert r.status_code == 200, (kind, r.get_data(as_text=True)[:300])
    return r.data


def test_published_documents_list_is_public_and_each_downloads(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    r = client.get("/api/v1/cdgs/81/documents")  # no token
    assert r.status_code == 200, r.json
    items = r.json
    assert isinstance(items, list)
    by_kind = {item["kind"]: item for item in items}
    assert set(KINDS) <= set(by_kind)
    formats = {
        "subscription-request": "pdf",
        "enrolment-form": "pdf",
        "premium-elements-list": "xlsx",
        "information-notice": "pdf",
        "cst-referral-model": "docx",
        "deliberation-model": "docx",
        "termination-model": "docx",
    }
    for kind, fmt in formats.items():
        item = by_kind[kind]
        assert item["format"] == fmt
        assert item["title"] and item["title"][0].isupper() and kind not in item["title"]
        assert item["url"] == f"/api/v1/cdgs/81/documents/{kind}"
        got = client.get(item["url"])
        assert got.status_code == 200
        assert len(got.data) == item["size"]
        assert got.headers["Content-Type"].startswith(item["media_type"].split(";")[0])
        disposition = got.headers["Content-Disposition"]
        assert f"cdg81-prev-2025-2030.{fmt}" in disposition and kind not in disposition
    assert by_kind["premium-elements-csv"]["format"] == "csv"
    assert r.headers["X-Convention-Reference"] == "CDG81-PREV-2025-2030"


def test_subscription_request_is_a_fillable_pdfa_form_with_a_signature_field(
    client: FlaskClient, published: dict[str, Any], tmp_path: Path
) -> None:
    data = download(client, "subscription-request")
    with pikepdf.open(io.BytesIO(data)) as pdf:
        fields = {str(f.T): f for f in pdf.Root.AcroForm.Fields}
        assert set(fields) >= DSC_FIELDS
        assert str(fields["SignatureCollectivite"].FT) == "/Sig"
        assert str(fields["dsc_siret"].FT) == "/Tx"
        assert "/NeedAppearances" not in pdf.Root.AcroForm
        assert str(pdf.Root.Lang) == "fr-FR"
    meta = xmp(data)
    assert 'pdfaid:part="2"' in meta or "<pdfaid:part>2</pdfaid:part>" in meta
    assert set(PdfReader(io.BytesIO(data)).get_fields() or {}) >= DSC_FIELDS
    text = pdftotext(data)
    for expected in (
        "Demande de souscription de la collectivité (DSC)",
        "CDG81-PREV-2025-2030",
        "Centre de gestion du Tarn",
        "Allianz Vie",
        "Collecteam",
        "2,30 %",
        "+ 0,30 %",
        "+ 0,45 %",
        "Perte de retraite",
        "1er janvier 2025",
        "31 décembre 2030",
        "contrat collectif à adhésion facultative",
        "décret n° 2022-581",
        "7,00 €",
    ):
        assert expected in text, expected
    # pdftk-java fills it: the values land in the fields, read back by another tool
    source = tmp_path / "dsc.pdf"
    source.write_bytes(data)
    check = subprocess.run(["qpdf", "--check", str(source)], capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout[-300:]
    values = {
        "dsc_denomination": "Commune d'Albi",
        "dsc_siret": "21810004800014",
        "dsc_contact_nom": "Hélène Durand",
        "dsc_montant_unique": "15,00",
        "dsc_date_avis_cst": "01/10/2024",
        "dsc_date_deliberation": "15/11/2024",
    }
    fdf = tmp_path / "data.fdf"
    fdf.write_bytes(_fdf(values))
    filled = tmp_path / "filled.pdf"
    subprocess.run(
        ["pdftk", str(source), "fill_form", str(fdf), "output", str(filled)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    read = PdfReader(str(filled)).get_fields() or {}
    for name, value in values.items():
        assert read[name].get("/V") == value, name


def _fdf(values: dict[str, str]) -> bytes:
    def pdf_string(text: str) -> bytes:
        encoded = b"\xfe\xff" + text.encode("utf-16-be")
        return (
            b"("
            + encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            + b")"
        )

    fields = b"".join(
        b"<< /T (" + name.encode() + b") /V " + pdf_string(value) + b" >>\n"
        for name, value in values.items()
    )
    return (
        b"%FDF-1.2\n1 0 obj\n<< /FDF << /Fields [\n"
        + fields
        + b"] >> >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def test_blank_enrolment_form_has_the_fields_and_options_but_no_employer(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    data = download(client, "enrolment-form")
    fields = PdfReader(io.BytesIO(data)).get_fields() or {}
    for name in (
        "bai_nom",
        "bai_prenom",
        "bai_naissance",
        "bai_employeur",
        "bai_siret_employeur",
        "bai_categorie",
        "bai_statut",
        "bai_remuneration",
        "bai_option_deces",
        "bai_option_perte_retraite",
    ):
        assert name in fields, name
    text = pdftotext(data)
    assert "Bulletin d'adhésion individuelle" in text
    assert "Option Décès (+ 0,30 %)" in text
    assert "2,30 %" in text
    assert "L'adhésion est facultative et individuelle" in text
    assert "SIRET 218" not in text  # blank: no employer named


def test_information_notice_states_rates_dates_example_and_regime(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    text = pdftotext(download(client, "information-notice"))
    for expected in (
        "Notice d'information",
        "Allianz Vie",
        "Collecteam",
        "pour 6 ans, du 1er janvier 2025 au 31 décembre 2030",
        "2,30 %",
        "1 500,00 €",
        "34,50 €",
        "contrat collectif à adhésion facultative",
        "L'adhésion est facultative et individuelle",
        "7,00 €",
        "indemnité de résidence",
    ):
        assert expected in text, expected


def test_premium_elements_list_is_a_spreadsheet_to_complete_and_the_same_as_csv(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    book = load_workbook(io.BytesIO(download(client, "premium-elements-list")))
    sheet = book.active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    header_at = next(i for i, row in enumerate(rows) if row[0] == "Élément de rémunération")
    header = rows[header_at]
    assert header[:2] == ["Élément de rémunération", "Compris dans l'assiette de cotisation"]
    assert "Montant mensuel brut moyen (€)" in header and "Code rubrique de paie" in header
    lines = [row for row in rows[header_at + 1 :] if row[0]]
    insured = {row[0].split(" (")[0].split(" :")[0]: row[1] for row in lines}
    assert insured == {
        "Traitement brut indiciaire": "oui",
        "Nouvelle bonification indiciaire": "oui",
        "Régime indemnitaire": "oui",
        "Autre élément du régime indemnitaire versé chaque mois": "oui",
        "Complément de traitement indiciaire": "oui",
        "Indemnité de résidence": "non",
        "Supplément familial de traitement": "non",
        "Complément indemnitaire annuel": "non",
        "Heures supplémentaires, astreintes et autres éléments variables": "non",
    }
    assert all(cell in (None, "") for row in lines for cell in row[2:])  # columns to fill
    assert "CDG81-PREV-2025-2030" in rows[1][0] and "2,30\u00a0%" in rows[2][0]
    assert "contrat collectif à adhésion facultative" in rows[1][0]
    assert sheet.data_validations.dataValidation  # oui/non offered
    text = download(client, "premium-elements-csv").decode("utf-8-sig")
    parsed = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert parsed[0] == header
    assert [row[:2] for row in parsed[1:]] == [row[:2] for row in lines]


def test_docx_models_are_filled_with_the_convention_in_french(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    texts = {kind: docx_text(download(client, kind)) for kind in KINDS if "model" in kind}
    for kind, text in texts.items():
        for expected in (
            "CDG81-PREV-2025-2030",
            "Centre de gestion du Tarn",
            "Allianz Vie",
            "Collecteam",
            "1er janvier 2025",
            "31 décembre 2030",
            "contrat collectif à adhésion facultative",
        ):
            assert expected in text, (kind, expected)
        assert "{{" not in text and "{%" not in text and "facultative\u00a0" not in text
    assert "Saisine du comité social territorial" in texts["cst-referral-model"]
    assert "2,30 %" in texts["cst-referral-model"] and "1,10 %" in texts["cst-referral-model"]
    deliberation = texts["deliberation-model"]
    assert "Vu l'avis du comité social territorial" in deliberation
    assert "décret n° 2022-581" in deliberation
    assert "Décès (+ 0,30 %)" in deliberation and "Perte de retraite (+ 0,45 %)" in deliberation
    assert "recommandé avec avis de réception" in texts["termination-model"]
    props = Document(io.BytesIO(download(client, "deliberation-model"))).core_properties
    assert props.title == "Modèle de délibération" and props.author == "Collecteam"


def test_mandatory_convention_publishes_compulsory_wording(
    client: FlaskClient, staff: dict[str, str], published: dict[str, Any]
) -> None:
    r = client.patch(
        f"/api/v1/conventions/{published['id']}", json={"regime": "mandatory"}, headers=staff
    )
    assert r.status_code == 200, r.json
    for kind in ("subscription-request", "information-notice", "enrolment-form"):
        text = pdftotext(download(client, kind))
        assert "contrat collectif à adhésion obligatoire" in text.lower(), kind
        assert "facultative" not in text, kind
    notice = pdftotext(download(client, "information-notice"))
    assert "au moins 50 % de la cotisation des garanties minimales" in notice
    deliberation = docx_text(download(client, "deliberation-model"))
    assert "loi de 2025" in deliberation and "2022-581" not in deliberation


def test_published_documents_cache_is_reused_then_regenerated_after_a_change(
    app: Flask, client: FlaskClient, staff: dict[str, str], published: dict[str, Any]
) -> None:
    with app.app_context():
        first = publication("81", store=document_store())
        again = publication("81", store=document_store())
        assert first.rendered and not again.rendered
        assert first.fingerprint == again.fingerprint
        assert [e.sha256 for e in first.entries] == [e.sha256 for e in again.entries]
        keys = {e.key for e in first.entries}
    before = download(client, "information-notice")
    assert download(client, "information-notice") == before
    listed = client.get("/api/v1/cdgs/81/documents")
    assert listed.headers["ETag"] == f'"{first.fingerprint}"'
    r = client.patch(
        f"/api/v1/conventions/{published['id']}", json={"base_rate": "2.45"}, headers=staff
    )
    assert r.status_code == 200
    with app.app_context():
        changed = publication("81", store=document_store())
        assert changed.rendered and changed.fingerprint != first.fingerprint
        assert not keys & {e.key for e in changed.entries}
    after = download(client, "information-notice")
    assert after != before
    assert "2,45 %" in pdftotext(after) and "2,30 %" not in pdftotext(after)


@pytest.mark.postgres
def test_current_convention_is_the_one_in_force_else_the_next_one(
    app: Flask, client: FlaskClient, staff: dict[str, str], published: dict[str, Any]
) -> None:
    older = {**CONVENTION, "reference": "CDG81-PREV-2019-2024"}
    older.update(starts_on="2019-01-01", ends_on="2024-12-31")
    later = {**CONVENTION, "reference": "CDG81-PREV-2031-2036"}
    later.update(starts_on="2031-01-01", ends_on="2036-12-31")
    for body in (older, later):
        assert client.post("/api/v1/conventions", json=body, headers=staff).status_code == 201
    with app.app_context():
        cdg = get_public_cdg("81")
        pick = current_convention
        assert pick(cdg, on=date(2026, 6, 1)).reference == "CDG81-PREV-2025-2030"
        assert pick(cdg, on=date(2024, 6, 1)).reference == "CDG81-PREV-2019-2024"
        assert pick(cdg, on=date(2018, 6, 1)).reference == "CDG81-PREV-2019-2024"
        assert pick(cdg, on=date(2031, 1, 1)).reference == "CDG81-PREV-2031-2036"


def test_unknown_cdg_or_document_answers_a_french_404(
    client: FlaskClient, staff: dict[str, str], published: dict[str, Any]
) -> None:
    assert_error(client.get("/api/v1/cdgs/99/documents"), 404, "unknown_cdg")
    assert_error(
        client.get("/api/v1/cdgs/81/documents/special-conditions"), 404, "unknown_document"
    )
    page = client.get("/cdg/99/documents")
    assert page.status_code == 404
    assert "CDG inconnu" in page.get_data(as_text=True)
    assert client.get("/cdg/81/documents/secret").status_code == 404
    assert (
        client.post("/api/v1/cdgs", json={**CDG81, "code": "82"}, headers=staff).status_code == 201
    )
    assert_error(client.get("/api/v1/cdgs/82/documents"), 404, "no_convention_in_force")


def test_documents_page_lists_the_convention_steps_and_files_in_french(
    client: FlaskClient, published: dict[str, Any]
) -> None:
    r = client.get("/cdg/81/documents")
    assert r.status_code == 200
    page = fold(r.get_data(as_text=True))
    for expected in (
        "Centre de gestion du Tarn",
        "CDG81-PREV-2025-2030",
        "Contrat collectif à adhésion facultative",
        "Allianz Vie",
        "Collecteam",
        "2,30 %",
        "1er janvier 2025",
        "Demande de souscription de la collectivité (DSC)",
        "Modèle de délibération",
        "Word (DOCX)",
        "tableur XLSX",
        "Ko",
    ):
        assert expected in page, expected
    # the online form is another part's page: linked exactly when the application serves it
    online = client.get("/cdg/81/souscription").status_code != 404
    assert ('href="/cdg/81/souscription"' in page) is online
    assert ("Déposer la demande de souscription en ligne" in page) is online
    steps = [
        page.index(s)
        for s in ("Saisir le comité", "Délibérer", "Envoyer la demande", "Joindre l'avis")
    ]
    assert steps == sorted(steps)
    for code in ('facultative"', "subscription-request<", "mandatory"):
        assert code not in page
    link = client.get("/cdg/81/documents/subscription-request")
    assert link.status_code == 200 and link.data.startswith(b"%PDF-")


@pytest.fixture
def shots(artifacts: Path) -> Iterator[Path]:
    folder = artifacts / "published"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


@pytest.mark.parametrize("backend", ["sqlite"])
def test_documents_page_in_chromium_on_a_phone_and_a_desktop(
    app: Flask,
    live: str,  # noqa: F811
    browser: Any,  # noqa: F811
    shots: Path,
) -> None:
    client = app.test_client()
    staff = auth(create_token(app, "admin", "setup@assureur.fr"))
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    assert client.post("/api/v1/conventions", json=CONVENTION, headers=staff).status_code == 201
    for width, name in ((390, "documents-phone"), (1280, "documents-desktop")):
        session = Session(browser, live, shots, width=width)
        session.go("/cdg/81/documents")
        page = session.page
        assert page.locator("h1").inner_text().startswith("Adhérer à la convention")
        rows = page.locator("table tbody tr")
        assert rows.count() >= 7
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width + 1, (name, scroll)  # nothing wider than the phone
        with page.expect_download() as info:
            page.get_by_role("link", name="Modèle de délibération").click()
        assert info.value.suggested_filename.endswith(".docx")
        session.check_a11y(name)
        session.close()


def test_cdg_space_links_to_its_public_documents(
    app: Flask, client: FlaskClient, published: dict[str, Any]
) -> None:
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    page = client.get("/cdg").get_data(as_text=True)
    assert 'href="/cdg/81/documents"' in page
    assert "Documents publiés pour les collectivités" in page


@pytest.mark.parametrize("backend", ["sqlite"])
def test_published_documents_being_rendered_elsewhere_answer_503_then_come(
    app: Flask, client: FlaskClient, published: dict[str, Any]
) -> None:
    with app.app_context():
        cdg = get_public_cdg("81")
        day = published_today()
        convention = current_convention(cdg, on=day)
        version = fingerprint(published_input(cdg, convention, on=day))
        claim = render_claim_name(f"published/81/{convention.id}/{version}")
        assert limiter().claim(claim, 60)  # another process is rendering this version
    try:
        r = client.get("/api/v1/cdgs/81/documents/information-notice")
        assert_error(r, 503, "documents_being_prepared")
        assert int(r.headers["Retry-After"]) > 0
        assert "préparation" in r.json["error"]["message"]
        page = client.get("/cdg/81/documents")
        assert page.status_code == 503
    finally:
        with app.app_context():
            limiter().release(claim)
    assert b"%PDF" in download(client, "information-notice")[:8]


def test_template_set_digest_is_cached_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sub in ("html", "docx"):
        (tmp_path / sub / "essai").mkdir(parents=True)
    page = tmp_path / "html" / "essai" / "notice.html"
    page.write_text("<p>un</p>")
    monkeypatch.setattr(kits_published, "TEMPLATES_ROOT", tmp_path)
    first = kits_published.template_set_digest("essai")
    reads: list[Path] = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    assert kits_published.template_set_digest("essai") == first
    assert reads == []  # nothing read again while nothing changed
    page.write_text("<p>deux, plus long</p>")
    changed = kits_published.template_set_digest("essai")
    assert changed != first and reads == [page]
