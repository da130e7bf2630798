"""Post-processing of a kit's single WeasyPrint PDF: forms any tool fills, signature fields,
PDF/A-2b metadata, and the split into one file per document.

WeasyPrint writes fields that only viewers honouring `NeedAppearances` display: text fields have
no appearance stream, buttons lack their Off state, and the only font offered to fields is a
subset CID font that fillers such as pdftk-java cannot encode. This module, working on the
written PDF with pikepdf (no second layout pass), makes the forms self-contained:

- a full simple TrueType font with WinAnsiEncoding and /Widths (the kit's Latin DejaVu Sans) is
  offered in /AcroForm /DR, and every variable-text field's /DA names it;
- every widget has an appearance stream (an empty one for text and signature fields, On and Off
  states for check boxes and radio buttons), and `NeedAppearances` is removed;
- radio groups carry export values named after their choices and the French label of their
  question as /TU, each button's label going to its structure element;
- the contractual pieces get empty signature fields (/FT /Sig) in their signature cells;
- the catalog says /Lang fr-FR, and the Info dictionary and the XMP packet carry the same
  title, author, subject, creator, producer and dates.

Splitting keeps, for each document, its pages, its fields, its part of the structure tree
(tagged PDF) and the output intent.
"""

from __future__ import annotations

import io
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pikepdf
from fontTools.ttLib import TTFont
from pikepdf import Array, Dictionary, Name, Pdf, String

FONTS_DIR = Path(__file__).resolve().parents[2] / "templates" / "html" / "common" / "fonts"
#: the kit's Latin DejaVu Sans, by variant: the fields' font and the per-kit lines' fonts
FONT_FILES = {
    "regular": FONTS_DIR / "DejaVuSans-latin.ttf",
    "bold": FONTS_DIR / "DejaVuSans-Bold-latin.ttf",
    "italic": FONTS_DIR / "DejaVuSans-Oblique-latin.ttf",
    "bold-italic": FONTS_DIR / "DejaVuSans-BoldOblique-latin.ttf",
}
FONT_RESOURCE = "/KitSans"
LANG = "fr-FR"
CHECKBOX_ON = "/Yes"

_TEXT_FIELD_TYPES = ("/Tx", "/Ch")
_RADIO_FLAG = 1 << 15
_PUSHBUTTON_FLAG = 1 << 16
_PRINT_FLAG = 4


class PdfFormsError(Exception):
    """The written PDF does not have the shape this module expects."""


@dataclass(frozen=True)
class SignatureField:
    """An empty signature field to add: its name, French label and place (PDF points)."""

    name: str
    label: str
    page: int  # index within the whole kit
    rect: tuple[float, float, float, float]


@dataclass(frozen=True)
class Piece:
    """One document of the kit: its title and its pages [start, end) in the kit."""

    title: str  # the file's title
    start: int
    end: int
    signature_fields: tuple[SignatureField, ...] = ()
    #: the document's name, for the bundle's parent field of its signature fields
    name: str = ""


@dataclass(frozen=True)
class TextLine:
    """One line of text drawn on a written page (PDF points, `y` the baseline), in the kit's
    full fonts: the per-kit text of a kit laid out once per convention. `runs` are (font
    variant, text) pairs; `word_spacing` (justified lines) and `char_spacing` are in points."""

    page: int  # index within the file the line is drawn in
    x: float
    y: float
    size: float
    color: tuple[float, float, float]
    runs: tuple[tuple[str, str], ...]
    word_spacing: float = 0.0
    char_spacing: float = 0.0
    #: the strip the line belongs to: drawn in its slot of the page's content when it has one
    strip: str = ""


@dataclass(frozen=True)
class Metadata:
    """What both the Info dictionary and the XMP packet say."""

    title: str
    author: str | None
    subject: str | None
    creator: str
    producer: str
    created: datetime  # timezone-aware

    def info_date(self) -> str:
        offset = self.created.strftime("%z")
        return self.created.strftime("D:%Y%m%d%H%M%S") + f"{offset[:3]}'{offset[3:]}'"

    def xmp_date(self) -> str:
        return self.created.isoformat(timespec="seconds")


# -- the fields' font ----------------------------------------------------------------------


@dataclass(frozen=True)
class _FontProgram:
    data: bytes
    compressed: bytes
    base_font: str
    widths: tuple[int, ...]  # codes 32..255
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int
    #: the characters the font draws (its cmap)
    characters: frozenset[str] = frozenset()


@cache
def _font_program(variant: str = "regular") -> _FontProgram:
    """A kit font's metrics for WinAnsi codes 32–255, read once per process."""
    data = FONT_FILES[variant].read_bytes()
    font = TTFont(io.BytesIO(data), lazy=True)
    scale = 1000 / font["head"].unitsPerEm
    cmap = font.getBestCmap()
    hmtx = font["hmtx"]
    notdef = hmtx[font.getGlyphOrder()[0]][0]
    widths = []
    for code in range(32, 256):
        # WinAnsiEncoding is cp1252, except: 0xA0 is `space`, 0xAD `hyphen`, unused codes bullets
        char = {0xA0: " ", 0xAD: "-"}.get(code) or bytes([code]).decode("cp1252", "ignore")
        if code == 0x7F or not char:
            char = "\u2022"
        glyph = cmap.get(ord(char)) if char else None
        widths.append(round((hmtx[glyph][0] if glyph else notdef) * scale))
    head, hhea = font["head"], font["hhea"]
    capital = font["glyf"][cmap[ord("H")]]
    name = font["name"].getDebugName(6) or "DejaVuSans"
    return _FontProgram(
        data=data,
        compressed=zlib.compress(data, 6),
        base_font=name.replace(" ", ""),
        widths=tuple(widths),
        bbox=tuple(round(v * scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)),  # type: ignore[arg-type]
        ascent=round(hhea.ascent * scale),
        descent=round(hhea.descent * scale),
        cap_height=round(capital.yMax * scale),
        characters=frozenset(chr(code) for code in cmap),
    )


def _embedded_program(pdf: Pdf, program: _FontProgram) -> pikepdf.Object | None:
    """WeasyPrint's own embedding of the same font file, when it embedded it whole (it does
    for fonts used by form fields, and every font of a kit laid out once per convention):
    sharing it keeps the files from carrying it twice."""
    for page in pdf.pages:
        for font in page.obj.get("/Resources", {}).get("/Font", {}).values():
            for target in font.get("/DescendantFonts", [font]):
                file = target.get("/FontDescriptor", {}).get("/FontFile2")
                if (
                    file is not None
                    and int(file.get("/Length1", 0)) == len(program.data)
                    and file.read_bytes() == program.data
                ):
                    return file
    return None


def _add_font(pdf: Pdf, variant: str = "regular") -> pikepdf.Object:
    program = _font_program(variant)
    font_file = _embedded_program(pdf, program)
    if font_file is None:
        font_file = pikepdf.Stream(pdf, program.compressed)
        font_file.Filter = Name.FlateDecode
        font_file.Length1 = len(program.data)
        font_file = pdf.make_indirect(font_file)
    descriptor = Dictionary(
        Type=Name.FontDescriptor,
        FontName=Name("/" + program.base_font),
        Flags=32 | (64 if "italic" in variant else 0),  # non-symbolic (and italic)
        FontBBox=Array(program.bbox),
        ItalicAngle=-11 if "italic" in variant else 0,
        Ascent=program.ascent,
        Descent=program.descent,
        CapHeight=program.cap_height,
        StemV=80,
        FontFile2=font_file,
    )
    return pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.TrueType,
            BaseFont=Name("/" + program.base_font),
            FirstChar=32,
            LastChar=255,
            Widths=Array(program.widths),
            Encoding=Name.WinAnsiEncoding,
            FontDescriptor=pdf.make_indirect(descriptor),
        )
    )


# -- appearances ---------------------------------------------------------------------------


def _size(widget: pikepdf.Dictionary) -> tuple[float, float]:
    x1, y1, x2, y2 = (float(v) for v in widget.Rect)
    return abs(x2 - x1), abs(y2 - y1)


def _appearance(
    pdf: Pdf, widget: pikepdf.Dictionary, content: bytes, resources: Any = None
) -> pikepdf.Object:
    width, height = _size(widget)
    # deflated here (an empty stream too): a kit's `stamp` copies streams as they are
    stream = _deflated(pdf, content)
    stream.Type = Name.XObject
    stream.Subtype = Name.Form
    stream.BBox = Array([0, 0, width, height])
    if resources is not None:
        stream.Resources = resources
    return pdf.make_indirect(stream)


def _font_size(da: str) -> float:
    """The size in a `/Font size Tf` default appearance, 9 when there is none."""
    tokens = da.split()
    for index, token in enumerate(tokens):
        if token == "Tf" and index >= 1:
            try:
                return float(tokens[index - 1]) or 9.0
            except ValueError:
                break
    return 9.0


def _fix_text_field(pdf: Pdf, widget: pikepdf.Dictionary, font: pikepdf.Object) -> None:
    size = _font_size(str(widget.get("/DA", "")))
    widget.DA = String(f"{FONT_RESOURCE} {size:g} Tf 0 g")
    resources = Dictionary(Font=Dictionary({FONT_RESOURCE: font}))
    widget.AP = Dictionary(N=_appearance(pdf, widget, b"/Tx BMC EMC", resources))


def _fix_button(pdf: Pdf, widget: pikepdf.Dictionary, state: str) -> bool:
    """Names the On state `state` and adds the Off state; returns whether it is on."""
    normal = widget.AP.N
    on = next(iter(normal.values()))
    checked = widget.get("/AS", Name.Off) != Name.Off
    widget.AP = Dictionary(N=Dictionary({state: on, "/Off": _appearance(pdf, widget, b"")}))
    widget.AS = Name(state) if checked else Name.Off
    return checked


def _state_name(value: str) -> str:
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plain.strip())
    return "/" + (cleaned or "choix")


def _fix_forms(pdf: Pdf, group_labels: dict[str, str]) -> pikepdf.Object | None:
    """Appearances, font and radio groups of every field; returns the fields' font, if any."""
    acroform = pdf.Root.get("/AcroForm")
    if acroform is None:
        return None
    font = None
    for page in pdf.pages:
        for widget in page.obj.get("/Annots", ()):
            if widget.get("/Subtype") != Name.Widget:
                continue
            parent = widget.get("/Parent")
            field_type = widget.get("/FT", parent.get("/FT") if parent is not None else None)
            if field_type in _TEXT_FIELD_TYPES:
                font = font if font is not None else _add_font(pdf)
                _fix_text_field(pdf, widget, font)
            elif field_type == Name.Btn and parent is not None:
                continue  # radio buttons: below, per group
            elif field_type == Name.Btn and not int(widget.get("/Ff", 0)) & _PUSHBUTTON_FLAG:
                widget.V = widget.AS if _fix_button(pdf, widget, CHECKBOX_ON) else Name.Off
    # WeasyPrint lists radio buttons both as their group's kids and as top-level fields
    acroform.Fields = Array([f for f in acroform.Fields if "/Parent" not in f])
    elements = _struct_elements(pdf)
    for group in acroform.Fields:
        if int(group.get("/Ff", 0)) & _RADIO_FLAG and "/Kids" in group:
            _fix_radio_group(pdf, group, group_labels, elements)
    for key in ("/NeedAppearances", "/DA", "/DR"):
        if key in acroform:
            del acroform[key]
    if font is not None:
        acroform.DR = Dictionary(Font=Dictionary({FONT_RESOURCE: font}))
        acroform.DA = String(f"{FONT_RESOURCE} 9 Tf 0 g")
    return font


def _struct_elements(pdf: Pdf) -> dict[int, pikepdf.Object]:
    """Structure elements by parent-tree key (the elements of annotations)."""
    tree = pdf.Root.get("/StructTreeRoot")
    if tree is None or "/ParentTree" not in tree:
        return {}
    nums = tree.ParentTree.get("/Nums", ())
    pairs = ((int(nums[i]), nums[i + 1]) for i in range(0, len(nums), 2))
    return {key: value for key, value in pairs if isinstance(value, Dictionary)}


def _fix_radio_group(
    pdf: Pdf, group: pikepdf.Dictionary, labels: dict[str, str], elements: dict[int, Any]
) -> None:
    """Export values named after the choices, Off states, the question as the field's /TU; each
    button's own label (the widgets of a field have no /TU) goes to its structure element.

    `labels` maps the group's name to its question and `name=value` to a button's label."""
    name = str(group.T)
    options = [str(o) for o in group.get("/Opt", ())]
    question = labels.get(name)
    if question:
        group.TU = String(question)
    group.V = Name.Off
    for index, kid in enumerate(group.Kids):
        value = options[index] if index < len(options) else str(index)
        if _fix_button(pdf, kid, _state_name(value)):
            group.V = kid.AS
        label = labels.get(f"{name}={value}") or str(kid.get("/TU", "")).strip()
        element = elements.get(int(kid.get("/StructParent", -1)))
        if label and element is not None:
            element.Alt = String(f"{question} : {label}" if question else label)
        for key in ("/T", "/TU", "/FT", "/V"):
            if key in kid:
                del kid[key]
    if "/Opt" in group:
        del group["/Opt"]


# -- per-kit text on pages laid out once -------------------------------------------------

#: the per-kit lines' fonts in the pages' resources, by variant
TEXT_FONTS = {
    "regular": "/KitSansText",
    "bold": "/KitSansTextBold",
    "italic": "/KitSansTextItalic",
    "bold-italic": "/KitSansTextBoldItalic",
}


def encodable(text: str, variant: str = "regular") -> bool:
    """Whether `text` can be drawn with a kit font: in WinAnsiEncoding, a glyph of the font for
    every character, no control character nor soft hyphen (which a layout hides)."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    characters = _font_program(variant).characters
    return all(" " <= ch != "\x7f" and ch != "\xad" and ch in characters for ch in text)


def text_width(text: str, size: float, variant: str = "regular") -> float:
    """The width of `text` (encodable) in a kit font at `size`, in the same unit."""
    widths = _font_program(variant).widths
    return sum(widths[code - 32] for code in text.encode("cp1252")) * size / 1000


def font_metrics() -> tuple[float, float]:
    """The kit font's ascent and descent (negative), in em."""
    program = _font_program()
    return program.ascent / 1000, program.descent / 1000


def add_text_fonts(
    pdf: Pdf, pages: dict[int, set[str]], known: dict[str, pikepdf.Object] | None = None
) -> None:
    """Offers the lines' fonts (`TEXT_FONTS`, by variant) to the pages that will carry lines:
    done once on the kit laid out once per convention, so that a kit's lines only add content.
    `known`: fonts already in the file (the fields' regular font), shared rather than added."""
    fonts: dict[str, pikepdf.Object] = dict(known or {})
    for number, variants in sorted(pages.items()):
        page = pdf.pages[number]
        # the page's own resources (WeasyPrint's pages share theirs): a file cut from the kit
        # then carries only the fonts its own pages use
        shared = page.obj.get("/Resources", Dictionary())
        resources = Dictionary({key: value for key, value in shared.items()})
        for key in ("/Font", "/ExtGState"):
            if key in shared:
                resources[key] = Dictionary({k: v for k, v in shared[key].items()})
        page.obj.Resources = resources
        if "/Font" not in resources:
            resources.Font = Dictionary()
        for variant in sorted(variants):
            if variant not in fonts:
                fonts[variant] = _add_font(pdf, variant)
            resources.Font[TEXT_FONTS[variant]] = fonts[variant]
        if "/ExtGState" not in resources:
            resources.ExtGState = Dictionary()
        resources.ExtGState[OPAQUE] = Dictionary(Type=Name.ExtGState, CA=1, ca=1)


#: the lines' graphics state: opaque (a slot sits where the layout drew an invisible mark)
OPAQUE = "/KitOpaque"


@dataclass(frozen=True)
class StripTarget:
    """Where the layout drew a strip's invisible mark: the strip's first line box, in the
    page's CSS pixels from its top left (WeasyPrint's content coordinates)."""

    name: str
    x_min: float
    x_max: float
    y_min: float
    y_max: float


@dataclass(frozen=True)
class Slot:
    """A strip's place in a page's content: the index of its (empty) stream in the page's
    /Contents, right after the strip's marked content (so its lines are read in order and
    tagged as the strip's element), and the matrix that brings back the page's default space."""

    name: str
    index: int
    matrix: tuple[float, float, float, float, float, float]


def _split_at_strips(pdf: Pdf, targets: dict[int, list[StripTarget]]) -> dict[int, list[Slot]]:
    """Cuts each page's content after the marked content of every strip's invisible mark (a
    text drawn transparent at the strip's first line: its glyphs are dropped) and puts an
    empty stream there, each kit's lines to come (`stamp`)."""
    slots: dict[int, list[Slot]] = {}
    for number, page_targets in sorted(targets.items()):
        page = pdf.pages[number]
        instructions = list(pikepdf.parse_content_stream(page))
        pending = list(page_targets)
        stack: list[pikepdf.Matrix] = []
        ctm = pikepdf.Matrix()
        marked: list[dict[str, Any]] = []
        cuts: list[tuple[int, str, pikepdf.Matrix]] = []
        dropped: set[int] = set()
        in_text = False
        for index, (operands, operator) in enumerate(instructions):
            op = str(operator)
            if op in ("BT", "ET"):
                in_text = op == "BT"
            elif op == "q":
                stack.append(ctm)
            elif op == "Q" and stack:
                ctm = stack.pop()
            elif op == "cm":
                ctm = pikepdf.Matrix(*(float(v) for v in operands)) @ ctm
            elif op in ("BDC", "BMC"):
                marked.append({"shows": [], "strip": None})
            elif op == "EMC" and marked:
                sequence = marked.pop()
                if sequence["strip"] is not None and not in_text:  # a slot outside BT/ET
                    dropped.update(sequence["shows"])
                    cuts.append((index, sequence["strip"], ctm.inverse()))
            elif op == "Tm" and marked and marked[-1]["strip"] is None:
                x, y = float(operands[4]), float(operands[5])
                for target in pending:
                    if target.x_min <= x <= target.x_max and target.y_min <= y <= target.y_max:
                        marked[-1]["strip"] = target.name
                        pending.remove(target)
                        break
            elif op in ("TJ", "Tj", "'", '"') and marked:
                marked[-1]["shows"].append(index)
        if not cuts:
            continue
        contents = Array()
        page_slots = []
        start = 0
        for index, name, matrix in cuts:
            part = [
                ins for i, ins in enumerate(instructions[start:index], start) if i not in dropped
            ]
            contents.append(_deflated(pdf, pikepdf.unparse_content_stream(part)))
            page_slots.append(Slot(name, len(contents), tuple(matrix.shorthand)))  # type: ignore[arg-type]
            contents.append(_deflated(pdf, b""))
            start = index
        contents.append(_deflated(pdf, pikepdf.unparse_content_stream(instructions[start:])))
        page.obj.Contents = contents
        slots[number] = page_slots
    return slots


def _line_operators(line: TextLine) -> bytes:
    r, g, b = line.color
    ops = [
        f"BT {r:.3f} {g:.3f} {b:.3f} rg 0 Tr 100 Tz 0 Ts "
        f"{line.char_spacing:.3f} Tc {line.word_spacing:.3f} Tw "
        f"{line.x:.3f} {line.y:.3f} Td"
    ]
    for variant, text in line.runs:
        ops.append(f"{TEXT_FONTS[variant]} {line.size:.3f} Tf <{text.encode('cp1252').hex()}> Tj")
    ops.append("ET")
    return " ".join(ops).encode()


def _draw_lines(pdf: Pdf, lines: Sequence[TextLine]) -> None:
    """Draws the lines on their pages, as pagination artifacts (outside the structure tree),
    after the page's own content (wrapped in q/Q, so that its graphics state does not leak).
    The pages offer the fonts already (`add_text_fonts`)."""
    pages: dict[int, list[TextLine]] = {}
    for line in lines:
        pages.setdefault(line.page, []).append(line)
    for number, page_lines in sorted(pages.items()):
        page = pdf.pages[number]
        ops = [b"/Artifact <</Type /Pagination>> BDC"]
        ops += [_line_operators(line) for line in page_lines]
        ops.append(b"EMC")
        # deflated here: `stamp` copies the file's streams as they are, without recompressing
        page.contents_add(_deflated(pdf, b"q\n"), prepend=True)
        page.contents_add(_deflated(pdf, b"\nQ\n" + b"\n".join(ops) + b"\n"))


def _deflated(pdf: Pdf, data: bytes) -> pikepdf.Stream:
    stream = pikepdf.Stream(pdf, zlib.compress(data, 6))
    stream.Filter = Name.FlateDecode
    return stream


def stamp(
    pdf_bytes: bytes,
    lines: Sequence[TextLine],
    *,
    title: str,
    created: datetime,
    slots: dict[int, list[Slot]] | None = None,
) -> bytes:
    """A kit's file from the same file laid out once per convention: its lines drawn (in their
    strips' slots, else after the page's content), its title (also its structure's document
    element's), dates and identifiers its own; author, subject, creator and producer stay the
    file's. The other streams are copied as they are (already deflated)."""
    with Pdf.open(io.BytesIO(pdf_bytes)) as pdf:
        slotted: dict[tuple[int, str], list[TextLine]] = {}
        loose = []
        for line in lines:
            page_slots = (slots or {}).get(line.page, ())
            if any(slot.name == line.strip for slot in page_slots):
                slotted.setdefault((line.page, line.strip), []).append(line)
            else:
                loose.append(line)
        for number, page_slots in (slots or {}).items():
            contents = pdf.pages[number].obj.Contents
            for slot in page_slots:
                slot_lines = slotted.get((number, slot.name))
                if slot_lines:
                    matrix = " ".join(f"{v:.6f}" for v in slot.matrix)
                    ops = b"\n".join(_line_operators(line) for line in slot_lines)
                    data = f"q {matrix} cm {OPAQUE} gs\n".encode() + ops + b"\nQ\n"
                    contents[slot.index].write(zlib.compress(data, 6), filter=Name.FlateDecode)
        _draw_lines(pdf, loose)
        document = _struct_document(pdf)
        if document is not None and "/T" in document:
            document.T = String(title)
        info = pdf.docinfo

        def text(key: str) -> str | None:
            return str(info[key]) if key in info else None

        creator, producer = text("/Creator") or "", text("/Producer") or "WeasyPrint"
        meta = Metadata(title, text("/Author"), text("/Subject"), creator, producer, created)
        _set_metadata(pdf, meta)
        return _save(pdf, recompress=False)


# -- signature fields ----------------------------------------------------------------------


def _struct_document(pdf: Pdf) -> pikepdf.Dictionary | None:
    tree = pdf.Root.get("/StructTreeRoot")
    if tree is None:
        return None
    kids = tree.K
    return kids[0] if isinstance(kids, Array) else kids


def _next_struct_key(tree: pikepdf.Dictionary) -> int:
    if "/ParentTreeNextKey" in tree:
        return int(tree.ParentTreeNextKey)
    nums = tree.ParentTree.get("/Nums", ())
    return max((int(nums[i]) for i in range(0, len(nums), 2)), default=-1) + 1


def _add_signature_fields(pdf: Pdf, fields: Iterable[SignatureField]) -> None:
    fields = list(fields)
    if not fields:
        return
    if "/AcroForm" not in pdf.Root:
        pdf.Root.AcroForm = pdf.make_indirect(Dictionary(Fields=Array()))
    acroform = pdf.Root.AcroForm
    acroform.SigFlags = 1  # the document holds signature fields
    document = _struct_document(pdf)
    for spec in fields:
        page = pdf.pages[spec.page].obj
        widget = pdf.make_indirect(
            Dictionary(
                Type=Name.Annot,
                Subtype=Name.Widget,
                FT=Name.Sig,
                T=String(spec.name),
                TU=String(spec.label),
                Rect=Array([round(v, 3) for v in spec.rect]),
                F=_PRINT_FLAG,
                P=page,
            )
        )
        widget.AP = Dictionary(N=_appearance(pdf, widget, b""))
        if "/Annots" not in page:
            page.Annots = Array()
        page.Annots.append(widget)
        acroform.Fields.append(widget)
        if document is not None:
            tree = pdf.Root.StructTreeRoot
            key = _next_struct_key(tree)
            objr = Dictionary(Type=Name.OBJR, Obj=widget, Pg=page)
            element = pdf.make_indirect(
                Dictionary(Type=Name.StructElem, S=Name.Form, P=document, Pg=page, K=objr)
            )
            element.Alt = String(spec.label)
            document.K.append(element)
            widget.StructParent = key
            tree.ParentTree.Nums.extend([key, element])
            tree.ParentTreeNextKey = key + 1


def _partial_name(title: str) -> str:
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = "".join(ch if ch.isalnum() else " " for ch in plain).split()
    return "".join(w[:1].upper() + w[1:] for w in words) or "Document"


def _group_signature_fields(pdf: Pdf, pieces: Sequence[Piece]) -> None:
    """In the bundle, the pieces' signature fields sit under one parent field per piece, so that
    `SignatureCollectivite` of two pieces are two fields."""
    acroform = pdf.Root.get("/AcroForm")
    if acroform is None:
        return
    names = {(index, f.name) for index, p in enumerate(pieces) for f in p.signature_fields}
    if not names:
        return
    page_piece = {
        pdf.pages[n].obj.objgen: index
        for index, piece in enumerate(pieces)
        for n in range(piece.start, piece.end)
    }
    parents: dict[int, pikepdf.Object] = {}
    kept = Array()
    for field in acroform.Fields:
        if field.get("/FT") == Name.Sig and "/P" in field:
            index = page_piece.get(field.P.objgen)
            if index is not None and (index, str(field.T)) in names:
                if index not in parents:
                    parents[index] = pdf.make_indirect(
                        Dictionary(
                            T=String(_partial_name(pieces[index].name or pieces[index].title)),
                            TU=String(pieces[index].name or pieces[index].title),
                            Kids=Array(),
                        )
                    )
                    kept.append(parents[index])
                field.Parent = parents[index]
                parents[index].Kids.append(field)
                continue
        kept.append(field)
    acroform.Fields = kept


# -- metadata ------------------------------------------------------------------------------


def _xmp(meta: Metadata) -> bytes:
    def alt(value: str) -> str:
        return f'<rdf:Alt><rdf:li xml:lang="x-default">{escape(value)}</rdf:li></rdf:Alt>'

    parts = [
        "<dc:format>application/pdf</dc:format>",
        f"<dc:title>{alt(meta.title)}</dc:title>",
        f"<dc:language><rdf:Bag><rdf:li>{LANG}</rdf:li></rdf:Bag></dc:language>",
    ]
    if meta.author:
        parts.append(
            f"<dc:creator><rdf:Seq><rdf:li>{escape(meta.author)}</rdf:li></rdf:Seq></dc:creator>"
        )
    if meta.subject:
        parts.append(f"<dc:description>{alt(meta.subject)}</dc:description>")
    date = meta.xmp_date()
    parts += [
        f"<xmp:CreatorTool>{escape(meta.creator)}</xmp:CreatorTool>",
        f"<xmp:CreateDate>{date}</xmp:CreateDate>",
        f"<xmp:ModifyDate>{date}</xmp:ModifyDate>",
        f"<xmp:MetadataDate>{date}</xmp:MetadataDate>",
        f"<pdf:Producer>{escape(meta.producer)}</pdf:Producer>",
    ]
    body = "".join(parts)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:pdf="http://ns.adobe.com/pdf/1.3/" pdfaid:part="2" pdfaid:conformance="B">'
        f"{body}</rdf:Description>"
        "</rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    ).encode()


def _set_metadata(pdf: Pdf, meta: Metadata) -> None:
    info = Dictionary(
        Title=String(meta.title),
        Creator=String(meta.creator),
        Producer=String(meta.producer),
        CreationDate=String(meta.info_date()),
        ModDate=String(meta.info_date()),
    )
    if meta.author:
        info.Author = String(meta.author)
    if meta.subject:
        info.Subject = String(meta.subject)
    pdf.trailer.Info = pdf.make_indirect(info)
    xmp = pikepdf.Stream(pdf, _xmp(meta))
    xmp.Type = Name.Metadata
    xmp.Subtype = Name.XML
    pdf.Root.Metadata = pdf.make_indirect(xmp)
    pdf.Root.Lang = String(LANG)
    pdf.Root.ViewerPreferences = Dictionary(DisplayDocTitle=True)
    if "/StructTreeRoot" in pdf.Root:
        pdf.Root.MarkInfo = Dictionary(Marked=True)


# -- splitting -----------------------------------------------------------------------------


def _copy(dst: Pdf, obj: Any) -> Any:
    """A foreign object for `dst`: indirect objects copied (once), direct containers rebuilt."""
    if isinstance(obj, pikepdf.Object) and obj.is_indirect:
        return dst.copy_foreign(obj)
    if isinstance(obj, Array):
        return Array([_copy(dst, item) for item in obj])
    if isinstance(obj, Dictionary):
        return Dictionary({key: _copy(dst, value) for key, value in obj.items()})
    return obj


def _field_root(widget: pikepdf.Object) -> pikepdf.Object:
    node = widget
    while "/Parent" in node:
        node = node.Parent
    return node


def _extract(
    src: Pdf, piece: Piece, meta: Metadata, parent_tree: dict[int, pikepdf.Object]
) -> bytes:
    dst = Pdf.new()
    source_pages = [src.pages[n] for n in range(piece.start, piece.end)]
    for page in source_pages:
        # copied as objects (not `pages.extend`): fields, structure and widgets are carried
        # below, sharing the same object map, so their /P and /Pg find these pages
        dst.pages.append(pikepdf.Page(dst.copy_foreign(page.obj)))
    # fields whose widgets are on these pages, in page order
    roots: dict[tuple[int, int], pikepdf.Object] = {}
    keys: set[int] = {int(p.obj.StructParents) for p in source_pages if "/StructParents" in p.obj}
    for page in source_pages:
        for annot in page.obj.get("/Annots", ()):
            if "/StructParent" in annot:
                keys.add(int(annot.StructParent))
            if annot.get("/Subtype") == Name.Widget:
                root = _field_root(annot)
                roots.setdefault(root.objgen, root)
    src_form = src.Root.get("/AcroForm")
    if roots and src_form is not None:
        form = Dictionary(Fields=Array([dst.copy_foreign(r) for r in roots.values()]))
        variable_text = any("/DA" in r for r in roots.values())
        signatures = any(r.get("/FT") == Name.Sig for r in roots.values())
        wanted = (("/DR", "/DA") if variable_text else ()) + (("/SigFlags",) if signatures else ())
        for key in wanted:
            if key in src_form:
                form[key] = _copy(dst, src_form[key])
        dst.Root.AcroForm = dst.make_indirect(form)
    _extract_structure(src, dst, piece, source_pages, keys, parent_tree)
    if "/OutputIntents" in src.Root:
        dst.Root.OutputIntents = _copy(dst, src.Root.OutputIntents)
    _set_metadata(dst, meta)
    return _save(dst)


def _parent_tree(pdf: Pdf) -> dict[int, pikepdf.Object]:
    """The parent tree's entries by key, read once for every file cut from the kit."""
    tree = pdf.Root.get("/StructTreeRoot")
    if tree is None or "/ParentTree" not in tree:
        return {}
    nums = tree.ParentTree.get("/Nums", ())
    return {int(nums[i]): nums[i + 1] for i in range(0, len(nums), 2)}


def _extract_structure(
    src: Pdf,
    dst: Pdf,
    piece: Piece,
    pages: list[pikepdf.Page],
    keys: set[int],
    parent_tree: dict[int, pikepdf.Object],
) -> None:
    document = _struct_document(src)
    if document is None:
        return
    on_pages = {p.obj.objgen for p in pages}
    kids = [k for k in document.K if "/Pg" in k and k.Pg.objgen in on_pages]
    # Every element's /P chain ends at the kit's document element, whose /K holds the other
    # documents' structure and whose /P leads to the whole parent tree: empty and detach it
    # while copying, so that the copies (of these pages' elements, of the margin boxes'
    # elements that only the parent tree lists, and of the parent tree entries) stay within
    # these pages. The copied document element becomes this file's.
    selected = Array()
    saved_kids, saved_parent = document.K, document.get("/P")
    document.K = Array()
    if saved_parent is not None:
        del document["/P"]
    try:
        copied = [dst.copy_foreign(k) for k in kids]
        element = dst.copy_foreign(document)
        for key in sorted(keys & parent_tree.keys()):
            selected.extend([key, _copy(dst, parent_tree[key])])
    finally:
        document.K = saved_kids
        if saved_parent is not None:
            document.P = saved_parent
    tree = dst.make_indirect(Dictionary(Type=Name.StructTreeRoot))
    element.K = Array(copied)
    element.P = tree
    element.T = String(piece.title)
    tree.K = Array([element])
    tree.ParentTree = dst.make_indirect(Dictionary(Nums=selected))
    tree.ParentTreeNextKey = max(keys, default=-1) + 1
    dst.Root.StructTreeRoot = tree


def _compress_streams(pdf: Pdf) -> None:
    """Deflate, once for the bundle and every file cut from it, the big streams WeasyPrint wrote
    plain (`uncompressed_pdf`: its own compression is zlib's slowest level): page contents, form
    XObjects, embedded fonts and the output intent's profile. Streams left plain here are
    deflated when saved. (Walking these few objects is cheaper than walking all of them.)"""
    seen: set[tuple[int, int]] = set()

    def deflate(stream: Any) -> None:
        if not isinstance(stream, pikepdf.Stream) or stream.objgen in seen:
            return
        seen.add(stream.objgen)
        if "/Filter" not in stream:
            stream.write(zlib.compress(stream.read_raw_bytes(), 6), filter=Name.FlateDecode)

    for page in pdf.pages:
        contents = page.obj.get("/Contents")
        for stream in contents if isinstance(contents, Array) else (contents,):
            deflate(stream)
        resources = page.obj.get("/Resources", {})
        for xobject in resources.get("/XObject", {}).values():
            deflate(xobject)
        for font in resources.get("/Font", {}).values():
            for target in font.get("/DescendantFonts", [font]):
                descriptor = target.get("/FontDescriptor", {})
                for key in ("/FontFile", "/FontFile2", "/FontFile3"):
                    deflate(descriptor.get(key))
    for intent in pdf.Root.get("/OutputIntents", ()):
        deflate(intent.get("/DestOutputProfile"))


def _save(pdf: Pdf, *, recompress: bool = True) -> bytes:
    """The file with its objects in object streams; `recompress=False` copies the streams
    already deflated as they are (and deflates the plain ones)."""
    buffer = io.BytesIO()
    pdf.save(
        buffer,
        min_version="1.7",
        deterministic_id=True,
        compress_streams=True,
        stream_decode_level=None if recompress else pikepdf.StreamDecodeLevel.none,
        object_stream_mode=pikepdf.ObjectStreamMode.generate,
        fix_metadata_version=False,
    )
    return buffer.getvalue()


# -- entry point ---------------------------------------------------------------------------


def finish_kit(
    bundle: bytes,
    *,
    pieces: Sequence[Piece],
    created: datetime,
    creator: str,
    group_labels: dict[str, str],
    text_pages: dict[int, set[str]] | None = None,
    strip_targets: dict[int, list[StripTarget]] | None = None,
    slots: dict[int, list[Slot]] | None = None,
) -> tuple[bytes, list[bytes]]:
    """The finished bundle and one PDF/A-2b file per piece, from WeasyPrint's single PDF.

    Pieces' titles become their files' titles; the bundle keeps the title, author and subject
    WeasyPrint took from the HTML, and every file says `creator`, WeasyPrint as producer and
    `created` (timezone-aware) as creation and modification dates. `text_pages` (page → font
    variants) offers the lines' fonts to the pages of a kit laid out once per convention, whose
    lines each kit draws (`stamp`); `strip_targets` cuts their pages' content where each strip
    goes, the cuts filling `slots` (by page of the kit).
    """
    with Pdf.open(io.BytesIO(bundle)) as pdf:
        info = pdf.docinfo

        def text(key: str) -> str | None:
            return str(info[key]) if key in info else None

        producer = text("/Producer") or "WeasyPrint"
        author, subject = text("/Author"), text("/Subject")
        bundle_meta = Metadata(text("/Title") or "Kit", author, subject, creator, producer, created)
        font = _fix_forms(pdf, group_labels)
        if text_pages:
            add_text_fonts(pdf, text_pages, {"regular": font} if font is not None else None)
        if strip_targets:
            cut = _split_at_strips(pdf, strip_targets)
            if slots is not None:
                slots.update(cut)
        _add_signature_fields(pdf, (f for piece in pieces for f in piece.signature_fields))
        _compress_streams(pdf)  # after the fields: the font is compared with its file plain
        parent_tree = _parent_tree(pdf)
        documents = [
            _extract(
                pdf,
                piece,
                Metadata(piece.title, author, subject, creator, producer, created),
                parent_tree,
            )
            for piece in pieces
        ]
        _group_signature_fields(pdf, pieces)
        _set_metadata(pdf, bundle_meta)
        return _save(pdf), documents
