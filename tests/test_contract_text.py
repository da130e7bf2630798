"""The contract text: grammar that follows the employer, worked examples per category, the start
of cover, the insurer's identification, signatures never alone, and one text for PDF and DOCX."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import formatting
from service.audit.models import AuditEvent
from service.extensions import db
from service.kits.domain import first_of_month_from, paris_today
from service.kits.render import SPECS, ConventionData, KitInput, RenderedKit, render_kit
from tests.conftest import CDG81, CONVENTION, ROOT, employer_payload, record_prerequisites, run_jobs
from tests.pdftools import pdf_text
from tests.test_render import MODULATED, kit_input

DATA = ROOT.parent / "shared" / "data"
TARN = ROOT / "service" / "demo" / "tarn.json"
SIRET = "21810004800014"
CONTRACTS = ("special-conditions", "membership-agreement")
LEGAL = {
    "insurer_legal_form": "société anonyme",
    "insurer_capital": "681879255",
    "insurer_register": "340 234 962 RCS Nanterre",
    "insurer_address": "1 cours Michelet, CS 30051, 92076 Paris La Défense Cedex",
}


# -- grammar ------------------------------------------------------------------------------------


def _communes() -> list[str]:
    with (DATA / "tarn-communes.csv").open(encoding="utf-8") as f:
        names = [row["name"] for row in csv.DictReader(f)]
    names += [c["name"] for c in json.loads(TARN.read_text(encoding="utf-8"))["communes"]]
    return sorted(set(names))


def _epcis() -> list[tuple[str, str]]:
    with (DATA / "tarn-epci.csv").open(encoding="utf-8") as f:
        rows = [(row["kind"].lower(), row["name"]) for row in csv.DictReader(f)]
    rows += [(e["kind"], e["name"]) for e in json.loads(TARN.read_text(encoding="utf-8"))["epcis"]]
    return sorted(set(rows))


def test_designation_of_every_tarn_commune_elides_and_contracts() -> None:
    communes = _communes()
    assert len(communes) > 300
    for name in communes:
        who = formatting.designation("commune", name)
        if name.startswith("Le "):
            assert who.the == f"la commune du {name[3:]}", name
        elif name.startswith("Les "):
            assert who.the == f"la commune des {name[4:]}", name
        elif name[0] in "AEIOUYÉÈ":
            assert who.the == f"la commune d'{name}", name
        else:
            assert who.the == f"la commune de {name}", name
        assert who.of_the == "de " + who.the and who.to_the == "à " + who.the
        assert who.signatory == "le maire" and who.represented == "représentée par son maire"
    assert formatting.designation("commune", "Albi").the == "la commune d'Albi"
    assert formatting.designation("commune", "Le Bez").the == "la commune du Bez"
    assert formatting.designation("commune", "Les Cabannes").of_the == "de la commune des Cabannes"
    assert formatting.designation("commune", "Itzac").the == "la commune d'Itzac"
    assert formatting.designation("commune", "Carmaux").the == "la commune de Carmaux"


def test_designation_of_every_tarn_epci_names_its_kind_in_full() -> None:
    epcis = _epcis()
    assert {kind for kind, _ in epcis} == {"cc", "ca"}
    for kind, name in epcis:
        who = formatting.designation(kind, name)
        noun = "communauté de communes" if kind == "cc" else "communauté d'agglomération"
        assert who.the == f"la {noun} {name[3:]}", name
        assert not re.search(r"\b(CC|CA)\b", who.the), who.the
        assert who.signatory == "le président ou la présidente"
        assert "(e)" not in who.represented and "(s)" not in who.the
    castres = formatting.designation("ca", "CA de Castres-Mazamet")
    assert castres.the == "la communauté d'agglomération de Castres-Mazamet"
    assert castres.of_the == "de la communauté d'agglomération de Castres-Mazamet"
    albigeois = formatting.designation("ca", "CA de l'Albigeois (C2A)", signatory_gender="F")
    assert albigeois.the == "la communauté d'agglomération de l'Albigeois (C2A)"
    assert albigeois.signatory == "la présidente"
    assert albigeois.represented == "représentée par sa présidente"


def test_designation_of_other_kinds_and_signatory_titles() -> None:
    syndicat = formatting.designation("syndicat", "Syndicat mixte du Dadou", signatory_gender="M")
    assert syndicat.the == "le syndicat mixte du Dadou"
    assert syndicat.of_the == "du syndicat mixte du Dadou"
    assert syndicat.to_the == "au syndicat mixte du Dadou"
    assert syndicat.signatory == "le président" and syndicat.signatory_of == "du président"
    assert syndicat.represented == "représenté par son président"
    unnamed = formatting.designation("syndicat", "SIAEP du Gijou")
    assert unnamed.the == "le syndicat SIAEP du Gijou"
    assert unnamed.signatory_of == "du président ou de la présidente"
    ccas = formatting.designation("ccas", "Albi")
    assert ccas.the == "le centre communal d'action sociale d'Albi"
    assert ccas.of_the == "du centre communal d'action sociale d'Albi"
    assert formatting.designation("ccas", "CCAS de Gaillac").the == (
        "le centre communal d'action sociale de Gaillac"
    )
    etablissement = formatting.designation("etablissement", "EHPAD Les Tilleuls")
    assert etablissement.the == "l'établissement public EHPAD Les Tilleuls"
    assert etablissement.of_the == "de l'établissement public EHPAD Les Tilleuls"
    assert etablissement.to_the == "à l'établissement public EHPAD Les Tilleuls"
    assert formatting.designation("commune", "Albi", signatory_gender="F").signatory == "la maire"
    assert formatting.designation("departement", "Département du Tarn").the == (
        "le département du Tarn"
    )


def test_of_elides_before_a_vowel_or_a_mute_h() -> None:
    assert formatting.of("Allianz Vie") == "d'Allianz Vie"
    assert formatting.of("Collecteam") == "de Collecteam"
    assert formatting.of("Humanis") == "d'Humanis"
    assert formatting.of("Hyères") == "d'Hyères"
    assert formatting.of("Hautpoul") == "de Hautpoul"
    assert formatting.of("Œuilly") == "d'Œuilly"
    assert formatting.of("Le Bez") == "du Bez" and formatting.of("Les Cabannes") == "des Cabannes"
    assert formatting.of("L'Isle-sur-Tarn") == "de L'Isle-sur-Tarn"
    assert formatting.plural(1, "agent") == "1 agent" and formatting.plural(12, "agent") == (
        "12 agents"
    )
    assert formatting.capital("681879255") == "681\u00a0879\u00a0255\u00a0€"


# -- rendered contracts -------------------------------------------------------------------------


def legal_input(contribution: dict[str, Any] | None = None) -> KitInput:
    """L'Isle-sur-Tarn, contribution by category, the insurer identified, cover from 1 April."""
    base = kit_input("L'Isle-sur-Tarn", contribution or MODULATED)
    convention = ConventionData(
        **{**base.convention.__dict__, **LEGAL, "insurer_capital": Decimal("681879255")}
    )
    return KitInput(
        **{**base.__dict__, "convention": convention, "cover_starts_on": date(2025, 4, 1)}
    )


@pytest.fixture(scope="module")
def modulated() -> RenderedKit:
    return render_kit(legal_input())


def _doc(kit: RenderedKit, kind: str) -> Any:
    return next(d for d in kit.documents if d.kind == kind)


def _expected_rows() -> list[str]:
    """Premium = 2.30 % × gross; contribution capped at the premium; share = the rest."""
    rows = []
    for category, amount in MODULATED["amounts"].items():
        for gross in ("1500.00", "1700.00", "2000.00"):
            premium = (Decimal("2.30") * Decimal(gross) / 100).quantize(Decimal("0.01"))
            paid = min(premium, Decimal(amount))
            amounts = [formatting.money(v) for v in (gross, premium, paid, premium - paid)]
            rows.append(
                f"Agents de catégorie {category} " + " ".join(amounts).replace("\u00a0", " ")
            )
    return rows


def test_examples_give_every_category_at_the_three_seed_salaries(modulated: RenderedKit) -> None:
    rows = _expected_rows()
    assert len(rows) == 9 and "Agents de catégorie B 1 700,00 € 39,10 € 12,00 € 27,10 €" in rows
    special = " ".join(pdf_text(_doc(modulated, "special-conditions").pdf))
    examples = special[special.index("Participation de l'employeur : exemples") :]
    for row in rows:
        assert row in examples, row
    # the notice is the convention's: it sends the agent to the special conditions
    notice = " ".join(pdf_text(_doc(modulated, "information-notice").pdf))
    assert not any(row in notice for row in rows)
    assert "les conditions particulières de l'adhésion de votre employeur" in notice
    document = Document(io.BytesIO(_doc(modulated, "special-conditions").docx))
    docx_rows = {
        " ".join(c.text for c in row.cells).replace("\u00a0", " ")
        for table in document.tables
        for row in table.rows
    }
    assert set(rows) <= docx_rows


def test_contracts_follow_the_employer_and_identify_the_insurer(modulated: RenderedKit) -> None:
    for kind in CONTRACTS:
        text = " ".join(pdf_text(_doc(modulated, kind).pdf))
        assert "l'adhésion de la commune de L'Isle-sur-Tarn" in text
        assert "représentée par son maire, ci-après « la collectivité »" in text
        assert "société anonyme au capital de 681 879 255 €" in text
        assert "immatriculée sous le n° 340 234 962 RCS Nanterre" in text
        assert "siège social : 1 cours Michelet, CS 30051, 92076 Paris La Défense Cedex" in text
        assert "1er avril 2025" in text  # the start of cover, not the employer's former date
        assert "(e)" not in text and "agent(s)" not in text
    notice = " ".join(pdf_text(_doc(modulated, "information-notice").pdf))
    assert "pour le compte d'Allianz Vie" in notice and "au plus tôt le 1er avril 2025" in notice
    assert "À remettre à chaque agent de la collectivité – à conserver" in notice
    special = " ".join(pdf_text(_doc(modulated, "special-conditions").pdf))
    assert "Participation de l'employeur : exemples" in special
    letter = " ".join(pdf_text(_doc(modulated, "access-letter").pdf))
    assert "À l'attention du maire" in letter
    assert "Votre collectivité a décidé d'adhérer" in letter
    assert "Commune de L'Isle-sur-Tarn À l'attention du maire" in letter
    assert "La commune de L'Isle-sur-Tarn a recueilli l'avis du comité social" in special


def _signature_page(pdf: bytes) -> tuple[int, list[str]]:
    pages = pdf_text(pdf)
    found = [n for n, text in enumerate(pages) if "Pour l'assureur" in text]
    assert len(found) == 1
    return found[0], pages


@pytest.mark.parametrize(("criteria_words", "address_lines"), [(0, 0), (200, 0), (0, 130)])
def test_signature_block_never_stands_alone_on_a_page(
    criteria_words: int, address_lines: int
) -> None:
    """Whatever the length before it, the last article shares the signatures' page. (Without the
    `break-inside: avoid` around them, these lengths leave the signatures alone on a page.)"""
    base = legal_input(
        {**MODULATED, "criteria": " ".join(["Critère social retenu."] * criteria_words)}
    )
    address = "Mairie, " + "lieu-dit Le Bourg, " * address_lines + "81500 L'Isle-sur-Tarn"
    employer = replace(base.employer, address=address)
    kit = render_kit(replace(base, employer=employer))
    for kind, last in (
        ("special-conditions", "Fondement de l'adhésion"),
        ("membership-agreement", "Protection des données"),
    ):
        number, pages = _signature_page(_doc(kit, kind).pdf)
        page = pages[number]
        heading = re.search(r"Article (\d+) – " + re.escape(last), page)
        assert heading is not None, (kind, criteria_words, page[:200])
        assert page.index(heading.group(0)) < page.index("Pour la collectivité")
        body = page[heading.end() : page.index("Pour la collectivité")]
        assert len(body.split()) >= 10, (kind, body)  # the article's text, not just its title


# -- one text for the PDF and the DOCX -----------------------------------------------------------

HEADING = re.compile(r"^Article (\d+) – (.+)$")


def _squash(text: str) -> str:
    return re.sub(r"[\s\u00a0\u202f•]+", "", text)


def _docx_articles(data: bytes) -> tuple[list[tuple[int, str]], list[str], str]:
    """(number, title) of each article, each article's text, and everything after the banner."""
    document = Document(io.BytesIO(data))
    headings: list[tuple[int, str]] = []
    bodies: list[list[str]] = []
    preamble: list[str] = []
    for block in document.iter_inner_content():
        if hasattr(block, "rows"):
            parts = [cell.text for row in block.rows for cell in row.cells]
        else:
            match = HEADING.match(block.text) if block.style.name == "Heading 2" else None
            if match:
                headings.append((int(match.group(1)), match.group(2)))
                bodies.append([])
                continue
            parts = [block.text]
        (bodies[-1] if bodies else preamble).extend(parts)
    return headings, ["\n".join(b) for b in bodies], "\n".join(preamble)


def _pdf_articles(
    pdf: bytes, title: str, reference: str, headings: list[tuple[int, str]]
) -> tuple[list[str], str]:
    pages = pdf_text(pdf)
    text = " ".join(
        # the footer (an artifact): its two boxes, in whichever order the page draws them
        re.sub(
            rf"Réf\. {re.escape(reference)} · {re.escape(title)} page \d+/\d+"
            rf"|page \d+/\d+ ?Réf\. {re.escape(reference)} · {re.escape(title)}",
            " ",
            page,
        )
        for page in pages
    )
    found = [int(n) for n in re.findall(r"Article (\d+) – ", text)]
    assert found == [n for n, _ in headings]
    cuts = []
    for number, heading in headings:
        marker = f"Article {number} – {heading}"
        assert marker in text, marker
        cuts.append((text.index(marker), len(marker)))
    bodies = []
    for i, (start, length) in enumerate(cuts):
        end = cuts[i + 1][0] if i + 1 < len(cuts) else len(text)
        bodies.append(text[start + length : end])
    return bodies, text[: cuts[0][0]]


@pytest.mark.parametrize("kind", CONTRACTS)
def test_pdf_and_docx_carry_the_same_articles(modulated: RenderedKit, kind: str) -> None:
    doc = _doc(modulated, kind)
    assert doc.docx is not None
    headings, docx_bodies, docx_preamble = _docx_articles(doc.docx)
    assert [n for n, _ in headings] == list(range(1, len(headings) + 1))
    assert len(headings) >= 6
    pdf_bodies, pdf_preamble = _pdf_articles(
        doc.pdf, SPECS[kind].title, "PSC-81-2025-000123", headings
    )
    for (number, heading), pdf_body, docx_body in zip(
        headings, pdf_bodies, docx_bodies, strict=True
    ):
        assert _squash(pdf_body) == _squash(docx_body), (kind, number, heading)
    assert _squash(pdf_preamble) == _squash(docx_preamble)
    assert "Pour l'assureur" in docx_bodies[-1]  # the signatures follow the last article


def test_docx_core_properties_name_the_piece_the_manager_and_the_day_of_issue(
    modulated: RenderedKit,
) -> None:
    for kind in CONTRACTS:
        properties = Document(io.BytesIO(_doc(modulated, kind).docx)).core_properties
        assert properties.title == f"{SPECS[kind].title} – PSC-81-2025-000123"
        assert properties.author == "Collecteam"
        assert properties.language == "fr-FR"
        issued = datetime(2025, 3, 4, tzinfo=UTC)
        assert properties.created == issued and properties.modified == issued
        footer = Document(io.BytesIO(_doc(modulated, kind).docx)).sections[0].footer
        assert footer.paragraphs[0].text == f"Réf. PSC-81-2025-000123 · {SPECS[kind].title}"


# -- the start of cover through the API ----------------------------------------------------------


def _issue(client: FlaskClient, staff: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    if body is None:
        return client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    return client.post(f"/api/v1/employers/{SIRET}/kits", json=body, headers=staff)


def test_issue_refuses_a_wrong_start_of_cover(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    payload = employer_payload(convention["id"], deliberation_on="2025-03-15")
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    record_prerequisites(client.application, payload["siret"])
    for body, code in (
        ({"cover_starts_on": "2026-02-15"}, "cover_not_first_of_month"),
        ({"cover_starts_on": "2031-01-01"}, "cover_outside_convention"),
        (
            {"cover_starts_on": "2025-03-01", "override_reason": "Demande du maire"},
            "cover_before_deliberation",
        ),
        ({"cover_starts_on": "2025-06-01"}, "cover_in_past"),
        ({"cover_starts_on": "demain"}, "invalid_field"),
        ({"cover_starts_on": "2025-06-01", "color": "bleu"}, "invalid_field"),
    ):
        r = _issue(client, staff, body)
        assert r.status_code == 422, (body, r.json)
        assert r.json["error"]["code"] == code, (body, r.json)
        assert r.json["error"]["field"].startswith(("cover_starts_on", "color")), r.json
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).json["kit"] is None


def test_start_of_cover_is_one_date_in_documents_mail_api_and_audit(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    tmp_path: Path,
) -> None:
    r = client.patch(f"/api/v1/conventions/{convention['id']}", json=LEGAL, headers=staff)
    assert r.status_code == 200 and r.json["insurer_capital"] == "681879255.00", r.json
    assert r.json["insurer_register"] == LEGAL["insurer_register"]
    payload = employer_payload(
        convention["id"], kind="cc", name="CC Tarn-Agout", signatory_gender="F"
    )
    r = client.post("/api/v1/employers", json=payload, headers=staff)
    assert r.status_code == 201 and r.json["signatory_gender"] == "F"
    record_prerequisites(client.application, payload["siret"])

    # by default: the first of a month, not before today (Paris time)
    kit = _issue(client, staff).json
    expected = first_of_month_from(max(paris_today(), date(2025, 1, 1)))
    assert kit["cover_starts_on"] == expected.isoformat()
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["cover_starts_on"] == (
        expected.isoformat()
    )
    special = " ".join(pdf_text(client.get(kit["documents"][0]["pdf_url"], headers=staff).data))
    assert f"L'adhésion prend effet le {formatting.long_date(expected)}." in special
    assert "la communauté de communes Tarn-Agout" in special
    assert "représentée par sa présidente" in special
    assert "société anonyme au capital de 681 879 255 €" in special
    run_jobs(app)
    mails = sorted((tmp_path / "instance" / "outbox").glob("*.eml"))
    assert len(mails) == 1
    body = message_from_bytes(mails[0].read_bytes()).get_payload(decode=True).decode()
    assert f"La garantie prend effet le {formatting.long_date(expected)}." in body

    # in the past only with a reason, which the audit trail keeps
    reason = "Adhésion décidée en 2025, kit réémis après une erreur de saisie"
    r = _issue(client, staff, {"cover_starts_on": "2025-06-01", "override_reason": reason})
    assert r.status_code == 201, r.json
    assert r.json["cover_starts_on"] == "2025-06-01"
    agreement = client.get(r.json["documents"][4]["pdf_url"], headers=staff).data
    assert "à compter du 1er juin 2025" in " ".join(pdf_text(agreement))
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.event == "cover_start_overridden")
        )
        assert event is not None and event.kit_id == r.json["id"]
        assert event.details["reason"] == reason
        assert event.details["cover_starts_on"] == "2025-06-01"


def test_convention_refuses_a_capital_that_is_not_an_amount(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    r = client.patch(
        f"/api/v1/conventions/{convention['id']}",
        json={"insurer_capital": "beaucoup"},
        headers=staff,
    )
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_capital"
    assert r.json["error"]["field"] == "insurer_capital"


def test_campaign_reports_an_employer_left_without_a_start_of_cover(
    app: Flask, client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    ended = {**CONVENTION, "reference": "CDG81-PREV-2019", "starts_on": "2019-01-01"}
    r = client.post("/api/v1/conventions", json={**ended, "ends_on": "2023-12-31"}, headers=staff)
    assert r.status_code == 201, r.json
    payload = employer_payload(
        r.json["id"], cst_opinion_on="2019-03-01", deliberation_on="2019-04-01"
    )
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    record_prerequisites(app, payload["siret"])
    started = client.post("/api/v1/cdgs/81/campaigns", headers=staff)
    assert started.status_code == 202, started.json
    assert run_jobs(app) == (0, 1)  # bad data: failed at once, not retried
    campaign = client.get(f"/api/v1/campaigns/{started.json['id']}", headers=staff).json
    assert (campaign["status"], campaign["done"], campaign["failed"]) == ("finished", 0, 1)
    (failure,) = campaign["failures"]
    assert failure["siret"] == SIRET
    assert failure["error"].startswith("Aucun début de garantie possible dans la période")
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).json["kit"] is None
