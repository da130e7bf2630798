"""The kit's PDFs read back with independent tools: PDF/A-2b by its parts (pikepdf, qpdf), forms
that pdftk-java fills visibly, choices as radio groups, tagging, and empty signature fields that
pyHanko signs by name and poppler's pdfsig validates."""

from __future__ import annotations

import io
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pikepdf
import pytest
from cryptography.hazmat.primitives import serialization
from fontTools.ttLib import TTFont

from service.kits.render import RenderedKit, render_kit
from signing.verify import TrustSettings, verify_return
from tests.pdftools import fold, words
from tests.test_render import kit_input

FORMS = ("enrolment-form", "beneficiary-designation")
PIECES = ("special-conditions", "membership-agreement")
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "pdf": "http://ns.adobe.com/pdf/1.3/",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
}


@pytest.fixture(scope="module")
def kit() -> RenderedKit:
    return render_kit(kit_input())


def _files(kit: RenderedKit) -> Iterator[tuple[str, bytes]]:
    for doc in kit.documents:
        yield doc.kind, doc.pdf
    yield "bundle", kit.bundle


def _pdf(kit: RenderedKit, kind: str) -> bytes:
    return next(d.pdf for d in kit.documents if d.kind == kind)


def _widgets(pdf: pikepdf.Pdf) -> Iterator[pikepdf.Dictionary]:
    for page in pdf.pages:
        for annot in page.obj.get("/Annots", ()):
            if annot.get("/Subtype") == pikepdf.Name.Widget:
                yield annot


def _terminal_fields(pdf: pikepdf.Pdf) -> Iterator[tuple[str, pikepdf.Dictionary]]:
    """(fully qualified name, field) of every terminal field."""

    def walk(node: pikepdf.Dictionary, prefix: str) -> Iterator[tuple[str, pikepdf.Dictionary]]:
        name = f"{prefix}.{node.T}" if prefix else str(node.T)
        kids = [k for k in node.get("/Kids", ()) if "/T" in k]
        if not kids:
            yield name, node
        for kid in kids:
            yield from walk(kid, name)

    for field in pdf.Root.AcroForm.Fields:
        yield from walk(field, "")


def _inherited(field: pikepdf.Dictionary, key: str) -> pikepdf.Object | None:
    node = field
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
    return None


def _run(*args: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args], cwd=path, capture_output=True, text=True, timeout=120, check=False
    )


def _render(pdf: Path) -> bytes:
    return subprocess.run(
        ["pdftoppm", "-r", "40", "-gray", str(pdf)], capture_output=True, timeout=120, check=True
    ).stdout


def _fdf(values: dict[str, str], choices: dict[str, str]) -> bytes:
    def utf16(value: str) -> str:
        return "<FEFF" + value.encode("utf-16-be").hex().upper() + ">"

    body = "".join(f"<< /T ({k}) /V {utf16(v)} >>\n" for k, v in values.items())
    body += "".join(f"<< /T ({k}) /V /{v} >>\n" for k, v in choices.items())
    return (
        "%FDF-1.2\n1 0 obj\n<< /FDF << /Fields [\n" + body + "] >> >>\nendobj\n"
        "trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    ).encode()


# -- appearances, fonts, NeedAppearances -----------------------------------------------------


def test_every_widget_has_appearance_streams_and_no_need_appearances(kit: RenderedKit) -> None:
    for kind, data in _files(kit):
        with pikepdf.open(io.BytesIO(data)) as pdf:
            widgets = list(_widgets(pdf))
            if kind in (*FORMS, *PIECES, "bundle"):
                assert widgets, kind
            else:
                assert "/AcroForm" not in pdf.Root, kind
            if "/AcroForm" in pdf.Root:
                assert "/NeedAppearances" not in pdf.Root.AcroForm, kind
            for widget in widgets:
                assert set(widget.AP.keys()) == {"/N"}, (kind, widget.Rect)
                assert int(widget.F) & 4 and not int(widget.F) & (1 | 2 | 32), kind
                field_type = _inherited(widget, "/FT")
                normal = widget.AP.N
                if field_type == pikepdf.Name.Btn:
                    states = set(normal.keys())
                    assert "/Off" in states and len(states) == 2, (kind, states)
                    assert pikepdf.Name.Off == widget.AS
                    assert all(isinstance(normal[s], pikepdf.Stream) for s in states)
                else:
                    assert isinstance(normal, pikepdf.Stream), (kind, field_type)
                    assert normal.Subtype == pikepdf.Name.Form and "/BBox" in normal


def test_text_fields_use_a_full_simple_truetype_font_with_winansi(kit: RenderedKit) -> None:
    for kind in (*FORMS, "bundle"):
        data = kit.bundle if kind == "bundle" else _pdf(kit, kind)
        with pikepdf.open(io.BytesIO(data)) as pdf:
            acroform = pdf.Root.AcroForm
            fonts = acroform.DR.Font
            texts = [f for _, f in _terminal_fields(pdf) if _inherited(f, "/FT") == "/Tx"]
            assert len(texts) >= 10, kind
            for field in texts:
                match = re.match(r"/(\S+) ([\d.]+) Tf", str(field.DA))
                assert match, field.DA
                font = fonts["/" + match.group(1)]
                assert font.Subtype == pikepdf.Name.TrueType
                assert font.Encoding == pikepdf.Name.WinAnsiEncoding
                assert (int(font.FirstChar), int(font.LastChar)) == (32, 255)
                assert len(font.Widths) == 224
                program = font.FontDescriptor.FontFile2.read_bytes()
                # the widths are the font program's (PDF/A), for French text
                ttf = TTFont(io.BytesIO(program))
                cmap, hmtx = ttf.getBestCmap(), ttf["hmtx"]
                scale = 1000 / ttf["head"].unitsPerEm
                for char in "aAzZé èàùçôœŒ«»’€0":
                    code = char.encode("cp1252")[0]
                    width = hmtx[cmap[ord(char)]][0] * scale
                    assert int(font.Widths[code - 32]) == pytest.approx(width, abs=1), char
                assert len(program) == int(font.FontDescriptor.FontFile2.Length1) > 30_000
                assert "+" not in str(font.BaseFont)  # the whole font, not a subset
                assert "gs" not in str(field.DA).split()  # only font and colour


def test_every_file_passes_qpdf_check(kit: RenderedKit, tmp_path: Path) -> None:
    for kind, data in _files(kit):
        path = tmp_path / f"{kind}.pdf"
        path.write_bytes(data)
        result = _run("qpdf", "--check", str(path), path=tmp_path)
        assert result.returncode == 0, (kind, result.stdout, result.stderr)
        assert "WARNING" not in result.stdout + result.stderr, kind
        assert data.startswith(b"%PDF-1.7")


# -- metadata --------------------------------------------------------------------------------


def _info_date(value: str) -> datetime:
    match = re.fullmatch(r"D:(\d{14})([+-]\d\d)'(\d\d)'", value)
    assert match, value
    return datetime.strptime(match.group(1) + match.group(2) + match.group(3), "%Y%m%d%H%M%S%z")


def test_info_and_xmp_agree_and_say_pdfa2b(kit: RenderedKit) -> None:
    for kind, data in _files(kit):
        with pikepdf.open(io.BytesIO(data)) as pdf:
            stream = pdf.Root.Metadata
            assert "/Filter" not in stream, kind
            root = ET.fromstring(stream.read_bytes())
            desc = root.find("rdf:RDF/rdf:Description", NS)
            assert desc is not None
            assert desc.get(f"{{{NS['pdfaid']}}}part") == "2"
            assert desc.get(f"{{{NS['pdfaid']}}}conformance") == "B"

            def xmp(path: str, desc: ET.Element = desc) -> str:
                found = desc.find(path, NS)
                assert found is not None and found.text, path
                return found.text

            info = pdf.docinfo
            assert xmp("dc:title/rdf:Alt/rdf:li") == str(info.Title)
            assert xmp("xmp:CreatorTool") == str(info.Creator)
            assert xmp("pdf:Producer") == str(info.Producer) == "WeasyPrint 70.0"
            assert xmp("dc:creator/rdf:Seq/rdf:li") == str(info.Author)
            assert xmp("dc:description/rdf:Alt/rdf:li") == str(info.Subject)
            created = datetime.fromisoformat(xmp("xmp:CreateDate"))
            assert created == _info_date(str(info.CreationDate))
            assert datetime.fromisoformat(xmp("xmp:ModifyDate")) == _info_date(str(info.ModDate))
            # the issue day, midnight in Paris
            assert created.isoformat() == "2025-03-04T00:00:00+01:00"
            assert xmp("dc:language/rdf:Bag/rdf:li") == "fr-FR"
            assert str(pdf.Root.Lang) == "fr-FR"
            assert "/OutputIntents" in pdf.Root
            assert len(pdf.trailer.ID) == 2
    titles = {d.kind: d.title for d in kit.documents}
    with pikepdf.open(io.BytesIO(_pdf(kit, "enrolment-form"))) as pdf:
        assert str(pdf.docinfo.Title) == f"{titles['enrolment-form']} – PSC-81-2025-000123"


# -- tagging ---------------------------------------------------------------------------------


def test_documents_are_tagged_with_their_own_structure(kit: RenderedKit) -> None:
    for kind, data in _files(kit):
        with pikepdf.open(io.BytesIO(data)) as pdf:
            root = pdf.Root
            assert bool(root.MarkInfo.Marked) is True, kind
            assert bool(root.ViewerPreferences.DisplayDocTitle) is True, kind
            tree = root.StructTreeRoot
            document = tree.K[0]
            assert pikepdf.Name.Document == document.S
            pages = {p.obj.objgen for p in pdf.pages}
            assert document.K, kind
            assert {k.Pg.objgen for k in document.K} <= pages, kind
            # nothing from the other documents came along: every element is on these pages
            for obj in pdf.objects:
                element = isinstance(obj, pikepdf.Dictionary) and obj.get("/Type") == "/StructElem"
                if element and "/Pg" in obj:
                    assert obj.Pg.objgen in pages, kind
            nums = tree.ParentTree.Nums
            keys = {int(nums[i]) for i in range(0, len(nums), 2)}
            for page in pdf.pages:
                assert int(page.obj.StructParents) in keys
            for widget in _widgets(pdf):
                assert int(widget.StructParent) in keys, kind
            assert int(tree.ParentTreeNextKey) > max(keys)


# -- choices and labels ----------------------------------------------------------------------


def test_choices_are_radio_groups(kit: RenderedKit) -> None:
    expected = {
        "enrolment-form": {
            "bai_categorie": ("Catégorie", {"/A", "/B", "/C"}),
            "bai_statut": ("Statut", {"/titulaire", "/stagiaire", "/contractuel"}),
        },
        "beneficiary-designation": {
            "dbe_clause": ("Choix de la clause", {"/standard", "/particuliere"}),
        },
    }
    for kind, groups in expected.items():
        with pikepdf.open(io.BytesIO(_pdf(kit, kind))) as pdf:
            fields = dict(_terminal_fields(pdf))
            for name, (label, states) in groups.items():
                group = fields[name]
                assert pikepdf.Name.Btn == group.FT
                assert int(group.Ff) & (1 << 15)  # radio
                assert str(group.TU) == label
                assert pikepdf.Name.Off == group.V
                assert "/Opt" not in group
                on = {s for kid in group.Kids for s in kid.AP.N if s != "/Off"}
                assert on == states
                assert all("/T" not in kid for kid in group.Kids)
    with pikepdf.open(io.BytesIO(_pdf(kit, "beneficiary-designation"))) as pdf:
        fields = dict(_terminal_fields(pdf))
        assert not {"dbe_clause_type", "dbe_clause_libre"} & set(fields)
        # each button's whole label, for screen readers, on its structure element
        nums = pdf.Root.StructTreeRoot.ParentTree.Nums
        elements = {int(nums[i]): nums[i + 1] for i in range(0, len(nums), 2)}
        alts = [str(elements[int(k.StructParent)].Alt) for k in fields["dbe_clause"].Kids]
        assert alts[0].startswith("Choix de la clause : Clause standard : mon conjoint")
        assert alts[0].endswith("à défaut mes héritiers.")
        assert alts[1] == (
            "Choix de la clause : Clause particulière : les personnes désignées ci-dessous."
        )


def test_every_field_has_a_french_label(kit: RenderedKit) -> None:
    for kind, data in _files(kit):
        with pikepdf.open(io.BytesIO(data)) as pdf:
            if "/AcroForm" not in pdf.Root:
                continue
            for name, field in _terminal_fields(pdf):
                label = str(field.get("/TU", ""))
                assert label, (kind, name)
                assert "_" not in label and label != name.rsplit(".", 1)[-1], (kind, label)
                assert re.search(r"[a-zàâçéèêëîïôûùüÿœ]", label), (kind, label)
    with pikepdf.open(io.BytesIO(_pdf(kit, "beneficiary-designation"))) as pdf:
        fields = dict(_terminal_fields(pdf))
        assert str(fields["dbe_b2_naissance"].TU) == "Bénéficiaire 2 : date de naissance"


# -- filling with pdftk-java -----------------------------------------------------------------


def test_form_filled_with_pdftk_shows_its_values(kit: RenderedKit, tmp_path: Path) -> None:
    cases = {
        "enrolment-form": (
            {
                "bai_nom": "Dupré-Lefèvre",
                "bai_prenom": "Élodie Œuvrard",
                "bai_adresse": "3 rue de l'Église, 81000 Albi",
                "bai_quotite": "80 %",
            },
            {"bai_categorie": "B", "bai_statut": "stagiaire", "bai_option_deces": "Yes"},
        ),
        "beneficiary-designation": (
            {"dbe_nom": "Çelik", "dbe_b1_nom": "Noémie Bœuf", "dbe_b1_part": "100"},
            {"dbe_clause": "particuliere"},
        ),
    }
    for kind, (values, choices) in cases.items():
        source, fdf, out = (tmp_path / f"{kind}{s}" for s in (".pdf", ".fdf", "-filled.pdf"))
        source.write_bytes(_pdf(kit, kind))
        fdf.write_bytes(_fdf(values, choices))
        result = _run(
            "pdftk", str(source), "fill_form", str(fdf), "output", str(out), path=tmp_path
        )
        assert result.returncode == 0, result.stderr
        text = fold(
            _run("pdftotext", "-layout", str(out), "-", path=tmp_path).stdout.replace("\f", " ")
        )
        for value in values.values():
            assert value in text, (kind, value)
        with pikepdf.open(out) as pdf:
            assert "/NeedAppearances" not in pdf.Root.AcroForm
            fields = dict(_terminal_fields(pdf))
            for name, value in choices.items():
                assert pikepdf.Name("/" + value) == fields[name].V
                chosen = [k for k in fields[name].get("/Kids", [fields[name]]) if k.AS != "/Off"]
                assert [str(k.AS) for k in chosen] == ["/" + value]
        # rendered, not only extractable: the filled page differs from the blank one
        assert _render(source) != _render(out)


# -- signature fields ------------------------------------------------------------------------


def test_contractual_pieces_have_empty_signature_fields_in_their_cells(kit: RenderedKit) -> None:
    for doc in kit.documents:
        with pikepdf.open(io.BytesIO(doc.pdf)) as pdf:
            sigs = {}
            if "/AcroForm" in pdf.Root:
                sigs = {n: f for n, f in _terminal_fields(pdf) if f.get("/FT") == "/Sig"}
            if doc.kind not in PIECES:
                assert sigs == {}, doc.kind
                continue
            assert set(sigs) == {"SignatureCollectivite", "SignatureAssureur"}
            assert int(pdf.Root.AcroForm.SigFlags) == 1
            assert "Collectivité".lower() in str(sigs["SignatureCollectivite"].TU).lower()
            assert "assureur" in str(sigs["SignatureAssureur"].TU)
            boxes = {}
            for name, field in sigs.items():
                assert "/V" not in field  # empty
                assert isinstance(field.AP.N, pikepdf.Stream)
                page = next(i for i, p in enumerate(pdf.pages) if p.obj.objgen == field.P.objgen)
                boxes[name] = (page, *(float(v) for v in field.Rect))
            # the insurer's field is where the countersignature stamp goes
            assert doc.insurer_box is not None
            assert boxes["SignatureAssureur"][0] == doc.insurer_box[0]
            assert boxes["SignatureAssureur"][1:] == pytest.approx(doc.insurer_box[1:], abs=0.01)
            # the employer's field: same row, left column, under "Pour la collectivité"
            page, x1, y1, x2, y2 = boxes["SignatureCollectivite"]
            assert page == doc.insurer_box[0] and y1 == pytest.approx(doc.insurer_box[2], abs=0.01)
            assert x2 < doc.insurer_box[1] and y2 - y1 == pytest.approx(60)
            page_words = [w for w in words(doc.pdf) if w.page == page]
            heading = next(w for w in page_words if w.text == "collectivité")
            top = heading.page_height - heading.y_max
            assert x1 <= heading.x_min < x2 and y2 < top
            # no printed word lies under a field
            for name, (_, fx1, fy1, fx2, fy2) in boxes.items():
                for w in page_words:
                    wy1, wy2 = w.page_height - w.y_max, w.page_height - w.y_min
                    inside = fx1 < w.x_max and w.x_min < fx2 and fy1 < wy2 and wy1 < fy2
                    assert not inside, (doc.kind, name, w.text)


def test_bundle_keeps_every_field_with_distinct_signature_fields(kit: RenderedKit) -> None:
    with pikepdf.open(io.BytesIO(kit.bundle)) as pdf:
        names = set(dict(_terminal_fields(pdf)))
    for doc in kit.documents:
        with pikepdf.open(io.BytesIO(doc.pdf)) as pdf:
            if "/AcroForm" in pdf.Root:
                for name, _ in _terminal_fields(pdf):
                    if name.startswith("Signature"):
                        assert any(n.endswith("." + name) for n in names), name
                    else:
                        assert name in names, name
    assert {
        "ConditionsParticulieres.SignatureCollectivite",
        "ConditionsParticulieres.SignatureAssureur",
        "ConventionDAdhesion.SignatureCollectivite",
        "ConventionDAdhesion.SignatureAssureur",
    } <= names


def test_employer_signs_its_field_by_name_and_pdfsig_validates(
    kit: RenderedKit,
    pki,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter

    issued = _pdf(kit, "special-conditions")
    out = io.BytesIO()
    signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name="SignatureCollectivite",
            md_algorithm="sha256",
            subfilter=SigSeedSubFilter.PADES,
        ),
        signer=pki.trusted.signer(),
    ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(issued)), output=out)
    signed = out.getvalue()
    assert signed.startswith(issued)  # an incremental revision of the issued file
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    report = _run("pdfsig", str(path), path=tmp_path).stdout
    assert "Signature Field Name: SignatureCollectivite" in report
    assert "Signature Validation: Signature is Valid." in report
    # the field was filled, no new one added; the insurer's stays empty
    assert report.count("Signature #") == 2
    assert "Signature Field Name: SignatureAssureur\n  The signature form field is not signed" in (
        report
    )
    with pikepdf.open(path) as pdf:
        fields = dict(_terminal_fields(pdf))
        assert "/V" in fields["SignatureCollectivite"]
        assert "/V" not in fields["SignatureAssureur"]
    # and the service's own verifier accepts it as a return of the issued piece
    roots = (pki.root.cert.public_bytes(serialization.Encoding.DER),)
    verdict = verify_return(
        signed, issued, marker="PSC-81-2025-000123", trust=TrustSettings(roots=roots)
    )
    assert verdict.status == "accepted", verdict.reasons


def test_every_file_is_deflated_with_object_streams(kit: RenderedKit) -> None:
    """WeasyPrint writes the kit plain; every file comes out deflated (all streams but the XMP
    packet) and with its objects in object streams: the size of a compressed PDF."""
    for name, data in _files(kit):
        with pikepdf.open(io.BytesIO(data)) as pdf:
            plain = [
                obj.objgen
                for obj in pdf.objects
                if isinstance(obj, pikepdf.Stream)
                and "/Filter" not in obj
                and obj.get("/Type") != pikepdf.Name.Metadata
            ]
            assert plain == [], name
            assert any(
                isinstance(obj, pikepdf.Stream) and obj.get("/Type") == pikepdf.Name.ObjStm
                for obj in pdf.objects
            ), name
            assert "/Filter" not in pdf.Root.Metadata, name
        # WeasyPrint's font subsets, plus the kit's full fonts (~35 KB a variant) that draw
        # each kit's own text on the kit laid out once per convention (render.py)
        assert len(data) < 250_000, (name, len(data))
