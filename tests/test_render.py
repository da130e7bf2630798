"""Kit generation as a pure function: every document read back, hard names, nothing cut."""

from __future__ import annotations

import gc
import io
import zipfile
from datetime import date
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest
from docx import Document
from pypdf import PdfReader
from weasyprint.layout import LayoutContext

from service.kits.render import (
    DOCUMENTS,
    CdgData,
    ConventionData,
    EmployerData,
    KitInput,
    RenderedKit,
    kit_zip,
    render_kit,
)
from service.reference.simulation import Option
from tests.pdftools import fold, fonts_embedded, pdf_text, words, xmp

FLAT = {"mode": "flat", "amount": "15.00"}
MODULATED = {
    "mode": "by_category",
    "amounts": {"A": "7.00", "B": "12.00", "C": "18.00"},
    "criteria": "Selon la catégorie hiérarchique, pour aider les rémunérations modestes.",
}
LONG_NAME = "Saint-Remy-en-Bouzemont-Saint-Genest-et-Isson"


def kit_input(
    name: str = "Albi",
    contribution: dict[str, Any] | None = None,
    reference: str = "PSC-81-2025-000123",
) -> KitInput:
    return KitInput(
        reference=reference,
        access_code="K7QHMX3P9TZB4RW2",
        issued_on=date(2025, 3, 4),
        access_code_expires_on=date(2025, 7, 2),
        portal_url="https://psc.example.fr/portail",
        cdg=CdgData("81", "Centre de gestion du Tarn", "prevoyance@cdg81.fr"),
        convention=ConventionData(
            reference="CDG81-PREV-2025-2030",
            insurer="Allianz Vie",
            manager="Collecteam",
            starts_on=date(2025, 1, 1),
            ends_on=date(2030, 12, 31),
            base_rate=Decimal("2.30"),
            cdg_fee_rate=Decimal("1.10"),
            options=(Option("deces", "Décès", Decimal("0.30")),),
        ),
        employer=EmployerData(
            siret="21810004800014",
            name=name,
            kind="commune",
            kind_label="Commune",
            address="16 rue de l'Hôtel de Ville, 81000 Albi",
            email="rh@mairie-albi.fr",
            headcount=560,
            cst_opinion_on=date(2024, 10, 1),
            deliberation_on=date(2024, 11, 15),
            joins_on=date(2025, 1, 1),
            contribution=contribution or FLAT,
        ),
    )


@pytest.fixture(scope="module")
def albi() -> RenderedKit:
    return render_kit(kit_input())


def test_kit_has_the_six_documents_in_order(albi: RenderedKit) -> None:
    assert [d.kind for d in albi.documents] == [
        "special-conditions",
        "information-notice",
        "enrolment-form",
        "beneficiary-designation",
        "membership-agreement",
        "access-letter",
    ]
    assert [d.requires_signature for d in albi.documents] == [
        True,
        False,
        False,
        False,
        True,
        False,
    ]
    assert [d.docx is not None for d in albi.documents] == [True, False, False, False, True, False]


def test_every_page_has_the_footer_with_reference_title_and_page_count(albi: RenderedKit) -> None:
    for doc in albi.documents:
        pages = pdf_text(doc.pdf)
        assert len(pages) == doc.pages >= 1
        for n, text in enumerate(pages, start=1):
            assert f"Réf. PSC-81-2025-000123 · {doc.title}" in text, (doc.kind, n)
            assert f"page {n}/{doc.pages}" in text, (doc.kind, n, text[-80:])


def test_contractual_pieces_carry_the_data(albi: RenderedKit) -> None:
    for kind in ("special-conditions", "membership-agreement"):
        text = " ".join(pdf_text(next(d for d in albi.documents if d.kind == kind).pdf))
        for expected in (
            "Albi",
            "218 100 048 00014",
            "Allianz Vie",
            "Collecteam",
            "Centre de gestion du Tarn",
            "CDG81-PREV-2025-2030",
            "15,00 €",
            "1er janvier 2025",
            "31 décembre 2030",
            "2,30 %",
            "1,10 %",
            "Pour la collectivité",
            "Pour l'assureur",
        ):
            assert expected in text, (kind, expected)
    special = " ".join(pdf_text(albi.documents[0].pdf))
    for expected in (
        "1er octobre 2024",
        "15 novembre 2024",
        "indemnité de résidence",
        "supplément familial",
        "34,50 €",
        "19,50 €",
        "39,10 €",
        "24,10 €",
        "46,00 €",
        "31,00 €",
        "Décès",
        "0,30 %",
        "trente jours",
    ):
        assert expected in special, expected


def test_access_letter_prints_the_grouped_code_and_the_portal(albi: RenderedKit) -> None:
    text = " ".join(pdf_text(albi.documents[-1].pdf))
    assert "K7QH-MX3P-9TZB-4RW2" in text
    assert "https://psc.example.fr/portail" in text
    assert "2 juillet 2025" in text


def test_forms_have_fillable_fields(albi: RenderedKit) -> None:
    fields = {}
    for doc in albi.documents:
        fields[doc.kind] = set((PdfReader(io.BytesIO(doc.pdf)).get_fields() or {}).keys())
    assert {"bai_nom", "bai_prenom", "bai_nir", "bai_option_deces", "bai_date"} <= fields[
        "enrolment-form"
    ]
    assert {"dbe_nom", "dbe_b1_nom", "dbe_b4_part", "dbe_clause"} <= fields[
        "beneficiary-designation"
    ]
    assert fields["special-conditions"] == {"SignatureCollectivite", "SignatureAssureur"}
    assert fields["access-letter"] == set()


def test_documents_are_pdfa2b_with_embedded_fonts(albi: RenderedKit) -> None:
    for doc in (*albi.documents,):
        meta = xmp(doc.pdf)
        assert 'pdfaid:part="2"' in meta and 'pdfaid:conformance="B"' in meta, doc.kind
        assert doc.title in meta
        assert fonts_embedded(doc.pdf) == [], doc.kind
        reader = PdfReader(io.BytesIO(doc.pdf))
        assert "/OutputIntents" in reader.trailer["/Root"]
        assert reader.metadata is not None and reader.metadata.title.startswith(doc.title)
    assert fonts_embedded(albi.bundle) == []


def test_bundle_has_one_bookmark_per_document(albi: RenderedKit) -> None:
    reader = PdfReader(io.BytesIO(albi.bundle))
    outline = [o for o in reader.outline if not isinstance(o, list)]
    assert [o.title for o in outline] == [d.title for d in DOCUMENTS]
    starts = [reader.get_destination_page_number(o) for o in outline]
    expected, page = [], 0
    for doc in albi.documents:
        expected.append(page)
        page += doc.pages
    assert starts == expected
    assert len(reader.pages) == albi.pages


def test_zip_holds_every_file(albi: RenderedKit) -> None:
    files = [(doc.title, doc.pdf, doc.docx) for doc in albi.documents]
    made = kit_zip("PSC-81-2025-000123", files, albi.bundle, dated=date(2025, 3, 14))
    # made again at each download: the same files give the same bytes
    assert kit_zip("PSC-81-2025-000123", files, albi.bundle, dated=date(2025, 3, 14)) == made
    with zipfile.ZipFile(io.BytesIO(made)) as archive:
        names = archive.namelist()
        assert len(names) == 6 + 2 + 1
        assert (
            archive.read("PSC-81-2025-000123/01-conditions-particulieres.pdf")
            == albi.documents[0].pdf
        )
        assert (
            archive.read("PSC-81-2025-000123/05-convention-d-adhesion.docx")
            == albi.documents[4].docx
        )
        assert archive.read("PSC-81-2025-000123/kit-complet.pdf") == albi.bundle


def docx_text(data: bytes) -> str:
    document = Document(io.BytesIO(data))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    for section in document.sections:
        parts.extend(p.text for p in section.footer.paragraphs)
    return fold("\n".join(parts))


def test_docx_versions_carry_the_data() -> None:
    kit = render_kit(kit_input("L'Isle-sur-Tarn", MODULATED))
    for doc in kit.documents:
        if doc.docx is None:
            continue
        text = docx_text(doc.docx)
        for expected in (
            "L'Isle-sur-Tarn",
            "218 100 048 00014",
            "7,00 €",
            "12,00 €",
            "18,00 €",
            "1er janvier 2025",
            "Réf. PSC-81-2025-000123",
            "Allianz Vie",
        ):
            assert expected in text, (doc.kind, expected)
        assert "{{" not in text and "{%" not in text
    assert "Selon la catégorie hiérarchique" in docx_text(kit.documents[0].docx or b"")


def test_modulated_contribution_states_amounts_and_criteria() -> None:
    kit = render_kit(kit_input(contribution=MODULATED))
    text = " ".join(pdf_text(kit.documents[0].pdf))
    for expected in (
        "Agents de catégorie A 7,00 €",
        "Agents de catégorie B 12,00 €",
        "Agents de catégorie C 18,00 €",
        "Selon la catégorie hiérarchique",
    ):
        assert expected in text, expected
    # the seed examples use the lowest amount
    assert "34,50 €" in text and "27,50 €" in text


@pytest.mark.parametrize(
    "name",
    ["L'Isle-sur-Tarn", "Œuilly", "Y", LONG_NAME, "Saint-Amans-Soult & Labruguière <test>"],
)
def test_hard_names_render_whole_and_nothing_overflows(name: str) -> None:
    kit = render_kit(kit_input(name))
    for doc in kit.documents:
        text = " ".join(pdf_text(doc.pdf))
        # the notice and the beneficiary designation are the convention's: no employer named
        if doc.kind not in ("information-notice", "beneficiary-designation"):
            assert name in text, (doc.kind, name)
        for word in words(doc.pdf):
            assert word.x_min >= 0 and word.x_max <= word.page_width, (doc.kind, word)
            assert word.y_min >= 0 and word.y_max <= word.page_height, (doc.kind, word)
            # inside the printable area (18 mm margins), footer included
            assert word.x_min >= 50 and word.x_max <= word.page_width - 50, (doc.kind, word)
    for doc in kit.documents:
        if doc.docx:
            assert name in docx_text(doc.docx)


def test_render_is_a_pure_function_of_its_input(albi: RenderedKit) -> None:
    """The same input gives the same files, byte for byte (the speed-ups change no output)."""
    again = render_kit(kit_input())
    assert [d.pdf for d in again.documents] == [d.pdf for d in albi.documents]
    assert [d.docx for d in again.documents] == [d.docx for d in albi.documents]
    assert again.bundle == albi.bundle
    other = render_kit(kit_input("Castres"))
    for a, b in zip(other.documents, albi.documents, strict=True):
        # the convention's documents name no employer: the same for the same kit reference
        same = a.kind in ("information-notice", "beneficiary-designation")
        assert (a.pdf == b.pdf) is same, a.kind


def test_examples_table_keeps_each_category_on_one_line() -> None:
    """The tables have set column widths (fixed layout, cheaper to lay out): in the examples,
    « Agents de catégorie B » reads on one line, its amounts beside it."""
    kit = render_kit(kit_input(contribution=MODULATED))
    found = words(kit.documents[0].pdf)
    rows = 0
    for word, after in pairwise(found):
        if word.text != "catégorie" or after.text not in ("A", "B", "C"):
            continue
        line = [w.text for w in found if w.page == word.page and abs(w.y_min - word.y_min) < 1]
        assert "Agents" in line, line
        rows += "27,10" in " ".join(line)
    assert rows == 1  # category B at 1 700,00 €: 39,10 € − 12,00 €


def test_a_kit_layout_is_freed_without_waiting_for_the_cycle_collector() -> None:
    """WeasyPrint's layout context refers to itself; render_kit breaks that cycle, so a kit's
    boxes and styles are freed at once, not by a collector pass costing a tenth of a kit."""
    gc.collect()
    gc.disable()
    try:
        render_kit(kit_input("Gaillac"))
        left = [o for o in gc.get_objects() if type(o) is LayoutContext]
    finally:
        gc.enable()
    assert left == []
