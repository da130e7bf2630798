"""The kit laid out once per convention and shape: every kit still prints its own employer,
SIRET, dates, contribution, code and reference on every document, read back by poppler and pypdf,
in reading order and tagged as the elements they fill; a text that cannot be drawn in its place
makes the kit lay itself out whole."""

from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path

import pikepdf

from service.kits.published import PublishedInput, render_published
from service.kits.render import (
    DOCUMENT_KINDS,
    RenderedKit,
    keep_layouts_in,
    render_kit,
    template_set,
)
from tests.pdftools import Word, pdf_text, words
from tests.test_render import MODULATED, kit_input


def _text(kit: RenderedKit, kind: str) -> str:
    return " ".join(pdf_text(next(d.pdf for d in kit.documents if d.kind == kind)))


def _pdf(kit: RenderedKit, kind: str) -> bytes:
    return next(d.pdf for d in kit.documents if d.kind == kind)


def _stats() -> dict[str, int]:
    return dict(template_set("default").layout_stats)


def test_layout_once_is_reused_for_another_employer_of_the_convention() -> None:
    render_kit(kit_input("Albi"))  # the shape made here, or before
    before = _stats()
    castres = render_kit(kit_input("Castres", reference="PSC-81-2025-000124"))
    after = _stats()
    assert after["reused"] >= before["reused"] + 1 and after["made"] == before["made"]
    form = _text(castres, "enrolment-form")
    assert "Employeur : Commune de Castres, SIRET 218 100 048 00014." in form
    assert "Participation de l'employeur : 15,00 € par mois, plafonnée" in form
    assert "kit PSC-81-2025-000124 émis le 4 mars 2025" in form
    assert "Réf. PSC-81-2025-000124 · Bulletin d'adhésion individuelle" in form
    designation = _text(castres, "beneficiary-designation")
    assert "Garantie décès – à remplir par l'agent" in designation
    special = _text(castres, "special-conditions")
    assert "constatent l'adhésion de la commune de Castres à la convention" in special
    assert "Pour la collectivité : la commune de Castres" in special
    letter = _text(castres, "access-letter")
    assert "À l'attention du maire" in letter and "K7QH-MX3P-9TZB-4RW2" in letter
    assert "Objet : kit contractuel PSC-81-2025-000124" in letter
    for kind in DOCUMENT_KINDS:
        text = _text(castres, kind)
        assert "Albi" not in text.replace("81000 Albi", "") and "000123" not in text, kind


def test_another_convention_or_contribution_text_gets_its_own_lines() -> None:
    base = kit_input("Gaillac")
    other = dataclasses.replace(
        base,
        convention=dataclasses.replace(base.convention, manager="Gestion Sud", options=()),
        employer=dataclasses.replace(base.employer, contribution=MODULATED),
    )
    before = _stats()
    kit = render_kit(other)
    assert _stats()["made"] > before["made"]  # the manager is in the documents' own text
    form = _text(kit, "enrolment-form")
    assert "Décès" not in form  # no option in this convention
    assert (
        "Participation de l'employeur : 7,00 € (catégorie A), 12,00 € (catégorie B) et 18,00 € "
        "(catégorie C) par mois, plafonnée au montant de votre cotisation." in form
    )
    assert "nouveau formulaire à Gestion Sud" in _text(kit, "beneficiary-designation")
    special = _text(kit, "special-conditions")
    assert "Agents de catégorie B 1 700,00 € 39,10 € 12,00 € 27,10 €" in special
    assert "Selon la catégorie hiérarchique, pour aider les rémunérations modestes." in special


def test_layout_once_html_names_no_employer_and_no_kit() -> None:
    """What the once-per-shape pass lays out is the same for two employers: their names,
    SIRET, amounts, code and references are only in the strips drawn afterwards."""
    ts = template_set("default")
    pages = []
    albi = kit_input("Albi")
    castres = dataclasses.replace(
        kit_input("Castres", reference="PSC-81-2025-000999"), access_code="ZZZZYYYYXXXXWWWW"
    )
    for data in (albi, castres):
        html = ts._once_html(ts.context(data), {})
        for value in (data.employer.name, data.reference, "218 100 048 00014", "15,00", "K7QH"):
            assert value not in html, value
        pages.append(html)
    assert pages[0] == pages[1]


def _marked_text(pdf: pikepdf.Pdf, page: pikepdf.Page) -> dict[int | None, list[bytes]]:
    """The text shown on a page by marked content: MCID (None: an artifact) → strings."""
    found: dict[int | None, list[bytes]] = {}
    stack: list[int | None] = []
    for operands, operator in pikepdf.parse_content_stream(page):
        op = str(operator)
        if op == "BDC":
            props = operands[1]
            mcid = props.get("/MCID") if isinstance(props, pikepdf.Dictionary) else None
            stack.append(int(mcid) if mcid is not None else None)
        elif op == "BMC":
            stack.append(None)
        elif op == "EMC":
            stack.pop()
        elif op == "Tj" and stack:
            found.setdefault(stack[-1], []).append(bytes(operands[0]))
    return found


def test_kit_lines_are_the_elements_own_tagged_text_in_reading_order() -> None:
    kit = render_kit(kit_input("Castres"))
    with pikepdf.open(io.BytesIO(_pdf(kit, "enrolment-form"))) as pdf:
        page = pdf.pages[0]
        font = page.obj.Resources.Font["/KitSansText"]
        assert font.Subtype == "/TrueType" and font.Encoding == "/WinAnsiEncoding"
        assert "+" not in str(font.BaseFont) and "/FontFile2" in font.FontDescriptor
        marked = _marked_text(pdf, page)
        employer = [
            mcid for mcid, shown in marked.items() if any(b"Commune de Castres" in s for s in shown)
        ]
        assert len(employer) == 1 and employer[0] is not None  # real content, not an artifact
        # the structure tree leads from that content to a paragraph of the document
        tree = pdf.Root.StructTreeRoot
        nums = tree.ParentTree.Nums
        entries = {int(nums[i]): nums[i + 1] for i in range(0, len(nums), 2)}
        element = entries[int(page.obj.StructParents)][employer[0]]
        while str(element.S) == "/Span":
            element = element.P
        assert str(element.S) in ("/P", "/Div")
        footers = [
            mcid
            for mcid, shown in marked.items()
            if any(s.startswith("Réf. PSC-81-2025-000123".encode("cp1252")) for s in shown)
        ]
        assert footers == [None]  # the footer's reference: a pagination artifact
    # read in order by a tool that follows the content (not the positions)
    special = _text(kit, "special-conditions")
    assert "Article 1 – Objet Les présentes conditions particulières constatent" in special
    assert "Entre les soussignés : Castres Commune · SIRET 218 100 048 00014" in special


def test_a_longer_name_fits_the_rooms_of_the_same_shape_without_overlap() -> None:
    render_kit(kit_input("Albi"))
    before = _stats()
    name = "Saint-Antonin-de-Lacalm-et-Saint-Lieux-Lafenasse"
    kit = render_kit(kit_input(name))
    assert _stats()["made"] - before["made"] <= 1
    for kind in ("special-conditions", "membership-agreement", "access-letter"):
        found = words(_pdf(kit, kind))
        assert any("Lafenasse" in word.text for word in found), kind
        _assert_no_overlap(found, kind)


def test_a_word_too_long_for_its_place_lays_the_kit_out_whole() -> None:
    name = "SyndicatIntercommunal" + "DesEauxDeLaValléeDuTarn" * 3  # no break opportunity
    before = _stats()
    kit = render_kit(kit_input(name))
    assert _stats()["whole"] == before["whole"] + 1
    for kind in DOCUMENT_KINDS:
        for word in words(_pdf(kit, kind)):
            assert word.x_min >= 40 and word.x_max <= word.page_width - 40, (kind, word)
    # laid out with the kit: the employer's line is the page's own text, not a drawn strip
    with pikepdf.open(io.BytesIO(_pdf(kit, "enrolment-form"))) as pdf:
        assert "/KitSansText" not in pdf.pages[0].obj.Resources.Font


def test_amounts_keep_their_non_breaking_spaces() -> None:
    data = kit_input("Albi")
    big = dataclasses.replace(
        data,
        employer=dataclasses.replace(
            data.employer, contribution={"mode": "flat", "amount": str(Decimal("1234.50"))}
        ),
    )
    form = _text(render_kit(big), "enrolment-form")
    assert "Participation de l'employeur : 1 234,50 € par mois" in form


def test_kits_rendered_in_threads_equal_kits_rendered_one_by_one() -> None:
    """Threads share the convention's layout: each kit's files are still its own."""
    inputs = [kit_input(name, reference=f"PSC-81-2025-00020{n}") for n, name in enumerate("AB")]
    alone = [render_kit(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(render_kit, inputs))
    for one, other in zip(alone, together, strict=True):
        assert [d.pdf for d in one.documents] == [d.pdf for d in other.documents]
        assert one.bundle == other.bundle


# -- the notice d'information: the convention's text, laid out once (hA2) -------------------


def _body(pages: list[str], footer: str) -> str:
    """The notice's text from its first heading to its last sentence, pages joined: each page's
    text up to its page number (what follows it is the kit's drawn lines), footers left out."""
    kept = []
    for number, text in enumerate(pages, start=1):
        mark = f"page {number}/{len(pages)}"
        kept.append(text[: text.index(mark)].replace(footer, ""))
    joined = " ".join(" ".join(kept).replace("•", " ").split())
    start = joined.index("1. Votre contrat en bref")
    end = joined.index("suit l'exécution de la convention.") + len("suit l'exécution")
    return joined[start:end]


def test_notice_is_laid_out_once_and_names_the_employer_only_in_its_strips() -> None:
    render_kit(kit_input("Albi"))
    before = _stats()
    data = kit_input("Castres", reference="PSC-81-2025-000124")
    data = dataclasses.replace(data, cover_starts_on=date(2025, 4, 1))
    kit = render_kit(data)
    assert _stats()["reused"] >= before["reused"] + 1 and _stats()["made"] == before["made"]
    pages = pdf_text(_pdf(kit, "information-notice"))
    assert len(pages) == 2
    text = " ".join(pages)
    assert "À remettre à chaque agent de la collectivité – à conserver" in text
    assert "kit PSC-81-2025-000124 émis le 4 mars 2025" in text
    assert "la garantie prend effet au plus tôt le 1er avril 2025." in text
    assert "Albi" not in text and "000123" not in text
    # the body names no employer: « votre employeur », « la collectivité qui vous emploie »
    body = _body(pages, "Réf. PSC-81-2025-000124 · Notice d'information")
    assert "Castres" not in body and "la collectivité qui vous emploie" in body
    # every page carries its own footer once, the start of cover is drawn on the page of §5's end
    for page in pages:
        assert page.count("Réf. PSC-81-2025-000124 · Notice d'information") == 1
    assert "au plus tôt le 1er avril 2025" in pages[1] and "Réclamations" in pages[1]


def test_notice_kit_lines_land_in_blank_places() -> None:
    """The drawn lines overlap no word the layout wrote (a line on the wrong page would)."""
    found = words(_pdf(render_kit(kit_input("Castres")), "information-notice"))
    _assert_no_overlap(found, "information-notice")


def test_kit_notice_and_published_notice_are_one_text() -> None:
    data = kit_input("Castres")
    kit = render_kit(data)
    kit_body = _body(
        pdf_text(_pdf(kit, "information-notice")),
        "Réf. PSC-81-2025-000123 · Notice d'information",
    )
    files = render_published(PublishedInput(data.cdg, data.convention, date(2025, 3, 4)))
    notice = next(f.content for f in files if f.kind == "information-notice")
    published = pdf_text(notice)
    published_body = _body(published, "Convention CDG81-PREV-2025-2030 · Notice d'information")
    # the kit's own sentence (its start of cover) is read where it stands, in § 5
    cover = " Pour les agents de votre employeur, la garantie prend effet au plus tôt le 1er"
    cover += " janvier 2025."
    assert cover in kit_body
    assert kit_body.replace(cover, "") == published_body
    assert "pour 6 ans, du 1er janvier 2025 au 31 décembre 2030" in kit_body
    assert "la cotisation au taux socle est de 34,50 € par mois" in kit_body
    assert "À remettre à chaque agent des collectivités adhérentes" in " ".join(published)
    assert "au plus tôt" not in " ".join(published)  # the start of cover is the kit's


def test_layouts_kept_on_disk_serve_other_processes_and_a_damaged_one_is_made_again(
    tmp_path: Path,
) -> None:
    """The processes of a machine share the kits laid out once (the instance folder): a process
    that has none in memory reads the kept one and stamps the very same files; a kept layout
    whose files were damaged is not read but made again."""
    ts = template_set("default")
    keep_layouts_in(tmp_path / "kit-layouts")
    try:
        ts._layouts.clear()
        first = render_kit(kit_input("Albi"))
        kept = [p for p in (tmp_path / "kit-layouts").iterdir() if not p.name.startswith(".")]
        assert kept and all((p / "shape.json").is_file() for p in kept)
        ts._layouts.clear()  # another process: nothing in memory
        before = _stats()
        again = render_kit(kit_input("Albi"))
        assert _stats()["loaded"] >= before["loaded"] + 1 and _stats()["made"] == before["made"]
        assert again.bundle == first.bundle
        assert [d.pdf for d in again.documents] == [d.pdf for d in first.documents]
        for folder in kept:
            (folder / "bundle.pdf").write_bytes(b"%PDF-1.7 damaged")
        ts._layouts.clear()
        before = _stats()
        third = render_kit(kit_input("Albi"))
        assert _stats()["made"] >= before["made"] + 1
        assert third.bundle == first.bundle
        ts._layouts.clear()  # the damaged copy was replaced: read again
        before = _stats()
        render_kit(kit_input("Albi"))
        assert _stats()["made"] == before["made"] and _stats()["loaded"] > before["loaded"]
    finally:
        keep_layouts_in(None)
        ts._layouts.clear()


def test_a_character_the_kit_fonts_lack_lays_the_kit_out_whole() -> None:
    """ƒ is in WinAnsiEncoding but not in the kit's Latin fonts: drawn in place it would be an
    invisible .notdef glyph; laid out whole, the layout finds it a font."""
    before = _stats()
    kit = render_kit(kit_input("Saint-ƒ"))
    assert _stats()["whole"] == before["whole"] + 1
    assert "Saint-ƒ" in _text(kit, "special-conditions")


def _assert_no_overlap(found: list[Word], kind: str) -> None:
    """No two words of a page overlap (by more than half a point each way)."""
    for n, one in enumerate(found):
        for other in found[n + 1 :]:
            if one.page != other.page:
                continue
            overlap_x = min(one.x_max, other.x_max) - max(one.x_min, other.x_min)
            overlap_y = min(one.y_max, other.y_max) - max(one.y_min, other.y_min)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, (kind, one, other)
