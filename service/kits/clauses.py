"""The contractual pieces as DOCX, converted from the very HTML the PDF lays out.

A contract's text has one source: its Jinja template (`contract/<kind>.html` of the template set),
rendered once per kit. The PDF includes that HTML; this module turns the same HTML into Word
paragraphs, headings, lists and tables, so that the two formats carry the same articles, numbers,
titles and text. Only the small subset of HTML the contract templates use is understood: `h1`,
`h2`, `p`, `ul`/`li`, `table` (`th`/`td`, lines as `div`), `div` containers, and the kit's text
blocks (`<div id="strip-…">`, one paragraph each).

Speed (two DOCX per kit): the base document is read once per process with python-docx (styles,
sections, footers, core properties, every part as python-docx saves it). Each contract then only
writes its body's WordprocessingML, fills in the footer's text and the core properties, and packs
the parts with the unchanged ones' compressed bytes reused. The package is, byte for byte, the one
python-docx saves for the same paragraphs, runs and tables (tests/test_docx_speed.py).
"""

from __future__ import annotations

import copy
import io
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

from docx import Document
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.constants import CONTENT_TYPE
from docx.opc.coreprops import CoreProperties
from docx.oxml.coreprops import CT_CoreProperties
from docx.oxml.ns import nsmap
from docx.oxml.parser import parse_xml
from docx.shared import Emu, Inches, Pt
from lxml import etree

SMALL = Pt(8)
PARAGRAPH_STYLES = ("Title", "Heading 2", "List Bullet")
TABLE_STYLE = "Table Grid"

_SECT_PR = f"{{{nsmap['w']}}}sectPr"
#: where the contract and the footer's text go in the base's parts, found once
_MARK = "contract-text-here"
#: python-docx's new table: automatic width, Word's usual look
_TABLE_PROPERTIES = (
    '<w:tblW w:type="auto" w:w="0"/><w:tblLook w:firstColumn="1" w:firstRow="1" '
    'w:lastColumn="0" w:lastRow="0" w:noHBand="0" w:noVBand="1" w:val="04A0"/></w:tblPr>'
)
#: lxml.html's parser without its Python element classes (the walk reads tags, classes, text)
_HTML_PARSER = etree.HTMLParser()
_STRING = etree.XPath("string()", smart_strings=False)
_SMALL_SIZE = f'<w:sz w:val="{round(SMALL.pt * 2)}"/>'
_BREAKS = re.compile(r"([\t\r\n])")
#: what lxml refuses in XML text (python-docx fails on it too)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# the ZIP records as zipfile writes them (deflated, no extra field, rw------- on this system)
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_HEADER = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP_VERSION = 20
_ZIP_SYSTEM = 0 if sys.platform == "win32" else 3
_ZIP_FILE_ATTRIBUTES = 0o600 << 16


@dataclass(frozen=True)
class DocxMeta:
    """Core properties: the same title as the PDF, the manager as author, dated the day of issue."""

    title: str
    author: str
    subject: str
    issued_on: date
    footer: str
    language: str = "fr-FR"


@dataclass(frozen=True)
class _Entry:
    """A part of the base package: its bytes, and the same deflated as zipfile deflates them."""

    name: str
    encoded_name: bytes
    flags: int
    size: int
    deflated: bytes
    crc: int


@dataclass(frozen=True)
class _Base:
    """The base document read once: what every contract built on it shares."""

    entries: tuple[_Entry, ...]
    document_name: str
    #: document.xml before and after the contract (which goes before the body's `w:sectPr`)
    document: tuple[str, str]
    #: each footer part cut where its text goes
    footers: Mapping[str, tuple[str, ...]]
    core_name: str
    core: CT_CoreProperties
    #: paragraph style name → its `w:pStyle` (empty for the default paragraph style)
    styles: Mapping[str, str]
    table_style: str
    #: the space between the margins of the last section, shared by a table's columns
    block_width: Emu


def _text(element: etree._Element) -> str:
    """The element's text, spaces collapsed (as lxml.html's `text_content()`)."""
    return " ".join(str(_STRING(element)).split())


def _classes(element: etree._Element) -> set[str]:
    return set((element.get("class") or "").split())


def _escaped(text: str) -> str:
    if _NOT_XML.search(text):
        raise ValueError(f"caractère de contrôle impossible dans un document Word : {text!r}")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    return (
        _escaped(value)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _run_content(text: str) -> str:
    """`text` in a run as python-docx writes it: tabs as `w:tab`, line ends as `w:br`."""
    pieces = _BREAKS.split(text) if "\t" in text or "\r" in text or "\n" in text else (text,)
    out = []
    for piece in pieces:
        if piece == "\t":
            out.append("<w:tab/>")
        elif piece in ("\r", "\n"):
            out.append("<w:br/>")
        elif len(piece.strip()) < len(piece):
            out.append(f'<w:t xml:space="preserve">{_escaped(piece)}</w:t>')
        elif piece:
            out.append(f"<w:t>{_escaped(piece)}</w:t>")
    return "".join(out)


def _run(text: str, classes: AbstractSet[str], *, bold: bool = False) -> str:
    properties = ""
    if bold or classes & {"party-name", "who"}:
        properties += "<w:b/>"
    if "criteria" in classes:
        properties += "<w:i/>"
    if classes & {"hint", "note", "small"}:
        properties += _SMALL_SIZE
    content = (f"<w:rPr>{properties}</w:rPr>" if properties else "") + _run_content(text)
    return f"<w:r>{content}</w:r>" if content else "<w:r/>"


class _Writer:
    def __init__(self, base: _Base) -> None:
        self.base = base
        self.out: list[str] = []
        self.keep_together = False

    def new_paragraph(
        self,
        text: str,
        classes: AbstractSet[str],
        *,
        style: str | None = None,
        bold: bool = False,
        right: bool = False,
    ) -> str:
        properties = ""
        if style or self.keep_together or right:
            inner = self.base.styles[style] if style else ""
            if self.keep_together:
                inner += "<w:keepNext/>"
            if right:
                inner += '<w:jc w:val="right"/>'
            properties = f"<w:pPr>{inner}</w:pPr>" if inner else "<w:pPr/>"
        return f"<w:p>{properties}{_run(text, classes, bold=bold)}</w:p>"

    def paragraph(
        self, text: str, *, style: str | None = None, classes: AbstractSet[str] = frozenset()
    ) -> None:
        self.out.append(self.new_paragraph(text, classes, style=style))

    def table(self, element: etree._Element) -> None:
        rows = [row for row in element.iter("tr")]
        width = max(len(row.findall("th")) + len(row.findall("td")) for row in rows)
        column = Emu(self.base.block_width // width).twips if width > 0 else 0
        out = self.out
        out.append(f"<w:tbl><w:tblPr>{self.base.table_style}{_TABLE_PROPERTIES}")
        grid = f'<w:gridCol w:w="{column}"/>' * width
        out.append(f"<w:tblGrid>{grid}</w:tblGrid>" if width else "<w:tblGrid/>")
        empty_cell = f'<w:tc><w:tcPr><w:tcW w:type="dxa" w:w="{column}"/></w:tcPr>'
        for row in rows:
            cells = [c for c in row if c.tag in ("th", "td")]
            out.append("<w:tr>" if width else "<w:tr/>")
            for index in range(width):
                out.append(empty_cell)
                if index < len(cells):
                    self.cell(cells[index])
                else:
                    out.append("<w:p/>")
                out.append("</w:tc>")
            if width:
                out.append("</w:tr>")
        out.append("</w:tbl>")

    def cell(self, source: etree._Element) -> None:
        lines = [child for child in source if child.tag == "div"]
        header = source.tag == "th"
        right = "num" in _classes(source)
        items = [(_text(line), _classes(line)) for line in lines] or [(_text(source), set())]
        for text, classes in items:
            self.out.append(self.new_paragraph(text, classes, bold=header, right=right))

    def walk(self, element: etree._Element) -> None:
        for child in element:
            if not isinstance(child.tag, str):
                continue  # comments
            classes = _classes(child)
            if child.tag == "h1":
                self.paragraph(_text(child), style="Title")
            elif child.tag == "h2":
                self.paragraph(_text(child), style="Heading 2")
            elif child.tag == "p":
                self.paragraph(_text(child), classes=classes)
            elif child.tag == "ul":
                for item in child.iter("li"):
                    self.paragraph(_text(item), style="List Bullet")
            elif child.tag == "table":
                self.table(child)
            elif child.tag == "div" and (
                len(child) == 0 or (child.get("id") or "").startswith("strip-")
            ):
                # a block of text, the kit's text of a strip included: one paragraph
                self.paragraph(_text(child), classes=classes)
            elif "closing" in classes:
                # the last article and the signatures stay on one page, as in the PDF
                self.keep_together = True
                self.walk(child)
                self.keep_together = False
            else:
                self.walk(child)


def to_docx(base: bytes, html: str, meta: DocxMeta) -> bytes:
    """The contract `html` (as the PDF lays it out) as a DOCX built on the `base` document."""
    prepared = _prepared(base)
    writer = _Writer(prepared)
    writer.walk(_fragment(html))
    before, after = prepared.document
    footer = _run_content(meta.footer)
    parts = {
        prepared.document_name: "".join((before, *writer.out, after)).encode("utf-8"),
        prepared.core_name: _core(prepared.core, meta),
    }
    for name, pieces in prepared.footers.items():
        parts[name] = footer.join(pieces).encode("utf-8")
    return _package(prepared.entries, parts, meta.issued_on)


def _fragment(html: str) -> etree._Element:
    """The contract's elements under one parent, as `lxml.html.fragment_fromstring` parses them."""
    document = etree.fromstring(f"<html><body>{html}</body></html>", _HTML_PARSER)
    body = document.find("body") if document is not None else None
    if body is None:
        raise ValueError("contrat HTML illisible")
    return body


def _core(base: CT_CoreProperties, meta: DocxMeta) -> bytes:
    element = copy.deepcopy(base)
    issued = datetime.combine(meta.issued_on, datetime.min.time(), tzinfo=UTC)
    properties = CoreProperties(element)
    properties.title = meta.title
    properties.author = meta.author
    properties.last_modified_by = meta.author
    properties.subject = meta.subject
    properties.language = meta.language
    properties.created = issued
    properties.modified = issued
    properties.revision = 1
    properties.comments = ""
    return etree.tostring(element, encoding="UTF-8", standalone=True)


@lru_cache(maxsize=4)
def _prepared(base: bytes) -> _Base:
    """The `base` document read with python-docx once: its styles, the width of a table, the
    footers emptied where their text goes, the core properties, and every part as saved."""
    document = Document(io.BytesIO(base))
    body = document.element.body
    if body.prefix != "w":
        raise ValueError("le document de base doit nommer WordprocessingML « w »")
    styles = {}
    for name in PARAGRAPH_STYLES:
        style_id = document.part.get_style_id(document.styles[name], WD_STYLE_TYPE.PARAGRAPH)
        styles[name] = f'<w:pStyle w:val="{_attribute(style_id)}"/>' if style_id else ""
    table_style_id = document.part.get_style_id(document.styles[TABLE_STYLE], WD_STYLE_TYPE.TABLE)
    table_style = f'<w:tblStyle w:val="{_attribute(table_style_id)}"/>' if table_style_id else ""
    last = document.sections[-1]
    block_width = Emu(
        (last.page_width or Inches(8.5))
        - (last.left_margin or Inches(1))
        - (last.right_margin or Inches(1))
    )
    footers = set()
    for section in document.sections:
        paragraphs = section.footer.paragraphs
        footer = paragraphs[0] if paragraphs else section.footer.add_paragraph()
        for run in footer.runs[1:]:
            run._r.getparent().remove(run._r)
        if footer.runs:
            run = footer.runs[0]
            run.text = ""
        else:
            run = footer.add_run()
            run.font.size = SMALL
        if not any(isinstance(c, etree._Comment) and c.text == _MARK for c in run._r):
            run._r.append(etree.Comment(_MARK))
        footers.add(section.footer.part.partname.membername)
    contract = etree.Comment(_MARK)
    end = body.find(_SECT_PR)
    if end is None:
        body.append(contract)
    else:
        end.addprevious(contract)
    document.core_properties  # noqa: B018 -- python-docx adds the part when the base has none
    core_name = next(
        part.partname.membername
        for part in document.part.package.iter_parts()
        if part.content_type == CONTENT_TYPE.OPC_CORE_PROPERTIES
    )
    document_name = document.part.partname.membername
    saved = io.BytesIO()
    document.save(saved)
    mark = f"<!--{_MARK}-->"
    with zipfile.ZipFile(saved) as package:
        entries = tuple(_entry(info.filename, package.read(info)) for info in package.infolist())
        before, after = package.read(document_name).decode("utf-8").split(mark)
        cut_footers = {
            name: tuple(package.read(name).decode("utf-8").split(mark)) for name in footers
        }
        core = parse_xml(package.read(core_name))
    if not isinstance(core, CT_CoreProperties):
        raise ValueError("propriétés du document de base illisibles")
    return _Base(
        entries=entries,
        document_name=document_name,
        document=(before, after),
        footers=cut_footers,
        core_name=core_name,
        core=core,
        styles=styles,
        table_style=table_style,
        block_width=block_width,
    )


def _deflate(data: bytes) -> bytes:
    """`data` deflated as zipfile does (ZIP_DEFLATED, default level)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _entry(name: str, data: bytes) -> _Entry:
    try:
        encoded, flags = name.encode("ascii"), 0
    except UnicodeEncodeError:
        encoded, flags = name.encode("utf-8"), 0x800
    return _Entry(name, encoded, flags, len(data), _deflate(data), zlib.crc32(data))


def _package(entries: tuple[_Entry, ...], parts: Mapping[str, bytes], day: date) -> bytes:
    """The ZIP package, every entry dated `day` at midnight (python-docx dates them with the
    time of saving): the same contract gives the same bytes, as the PDFs do. Byte for byte what
    zipfile writes for deflated entries; the base's unchanged parts are deflated once."""
    if day.year < 1980:
        raise ValueError("un document ZIP ne peut pas être daté d'avant 1980")
    dos_date, dos_time = (day.year - 1980) << 9 | day.month << 5 | day.day, 0
    out, directory = bytearray(), bytearray()
    for entry in entries:
        data = parts.get(entry.name)
        if data is None:
            deflated, crc, size = entry.deflated, entry.crc, entry.size
        else:
            deflated, crc, size = _deflate(data), zlib.crc32(data), len(data)
        name = entry.encoded_name
        offset = len(out)
        out += _LOCAL_HEADER.pack(
            b"PK\x03\x04", _ZIP_VERSION, 0, entry.flags, zipfile.ZIP_DEFLATED, dos_time,
            dos_date, crc, len(deflated), size, len(name), 0,
        )  # fmt: skip
        out += name
        out += deflated
        directory += _CENTRAL_HEADER.pack(
            b"PK\x01\x02", _ZIP_VERSION, _ZIP_SYSTEM, _ZIP_VERSION, 0, entry.flags,
            zipfile.ZIP_DEFLATED, dos_time, dos_date, crc, len(deflated), size, len(name),
            0, 0, 0, 0, _ZIP_FILE_ATTRIBUTES, offset,
        )  # fmt: skip
        directory += name
    if len(out) + len(directory) >= zipfile.ZIP64_LIMIT:
        raise ValueError("document DOCX trop volumineux")
    end = _END_RECORD.pack(
        b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(out), 0
    )
    return bytes(out + directory + end)
