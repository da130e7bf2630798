"""The contractual pieces as DOCX, converted from the very HTML the PDF lays out.

A contract's text has one source: its Jinja template (`contract/<kind>.html` of the template set),
rendered once per kit. The PDF includes that HTML; this module turns the same HTML into Word
paragraphs, headings, lists and tables, so that the two formats carry the same articles, numbers,
titles and text. Only the small subset of HTML the contract templates use is understood: `h1`,
`h2`, `p`, `ul`/`li`, `table` (`th`/`td`, lines as `div`), and `div` containers.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Pt
from docx.table import _Cell
from docx.text.paragraph import Paragraph
from lxml import html as lxml_html
from lxml.html import HtmlElement

SMALL = Pt(8)
STYLES = ("Title", "Heading 2", "List Bullet", "Table Grid")


@dataclass(frozen=True)
class DocxMeta:
    """Core properties: the same title as the PDF, the manager as author, dated the day of issue."""

    title: str
    author: str
    subject: str
    issued_on: date
    footer: str
    language: str = "fr-FR"


def _text(element: HtmlElement) -> str:
    return " ".join(element.text_content().split())


def _classes(element: HtmlElement) -> set[str]:
    return set((element.get("class") or "").split())


def _style_run(
    paragraph: Paragraph, text: str, classes: AbstractSet[str], *, bold: bool = False
) -> None:
    run = paragraph.add_run(text)
    if bold or classes & {"party-name", "who"}:
        run.bold = True
    if classes & {"hint", "note", "small"}:
        run.font.size = SMALL
    if "criteria" in classes:
        run.italic = True


class _Writer:
    def __init__(self, document: DocxDocument) -> None:
        self.document = document
        self.keep_together = False
        # looked up once: python-docx finds a style by name by scanning every style
        self.styles = {name: document.styles[name] for name in STYLES}

    def paragraph(
        self, text: str, *, style: str | None = None, classes: AbstractSet[str] = frozenset()
    ) -> Paragraph:
        paragraph = self.document.add_paragraph(style=self.styles[style] if style else None)
        _style_run(paragraph, text, classes)
        if self.keep_together:
            paragraph.paragraph_format.keep_with_next = True
        return paragraph

    def table(self, element: HtmlElement) -> None:
        rows = [row for row in element.iter("tr")]
        width = max(len(row.findall("th")) + len(row.findall("td")) for row in rows)
        table = self.document.add_table(rows=len(rows), cols=width)
        table.style = self.styles["Table Grid"]
        for row, target in zip(rows, table.rows, strict=True):
            cells = [c for c in row if c.tag in ("th", "td")]
            for source, cell in zip(cells, target.cells, strict=False):
                self.cell(cell, source)

    def cell(self, cell: _Cell, source: HtmlElement) -> None:
        lines = [child for child in source if child.tag == "div"]
        header = source.tag == "th"
        right = "num" in _classes(source)
        first = cell.paragraphs[0]
        items = [(_text(line), _classes(line)) for line in lines] or [(_text(source), set())]
        for index, (text, classes) in enumerate(items):
            paragraph = first if index == 0 else cell.add_paragraph()
            _style_run(paragraph, text, classes, bold=header)
            if right:
                paragraph.alignment = WD_ALIGN_PARAGRAPH.RIGHT
            if self.keep_together:
                paragraph.paragraph_format.keep_with_next = True

    def walk(self, element: HtmlElement) -> None:
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
            elif child.tag == "div" and len(child) == 0:
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
    document = Document(io.BytesIO(base))
    root = lxml_html.fragment_fromstring(html, create_parent="div")
    _Writer(document).walk(root)
    for section in document.sections:
        paragraphs = section.footer.paragraphs
        footer = paragraphs[0] if paragraphs else section.footer.add_paragraph()
        for run in footer.runs[1:]:
            run._r.getparent().remove(run._r)
        if footer.runs:
            footer.runs[0].text = meta.footer
        else:
            footer.add_run(meta.footer).font.size = SMALL
    issued = datetime.combine(meta.issued_on, datetime.min.time(), tzinfo=UTC)
    properties = document.core_properties
    properties.title = meta.title
    properties.author = meta.author
    properties.last_modified_by = meta.author
    properties.subject = meta.subject
    properties.language = meta.language
    properties.created = issued
    properties.modified = issued
    properties.revision = 1
    properties.comments = ""
    out = io.BytesIO()
    document.save(out)
    return _dated(out.getvalue(), meta.issued_on)


def _dated(package: bytes, day: date) -> bytes:
    """The package with every entry dated `day` at midnight (python-docx dates them with the
    time of saving): the same contract gives the same bytes, as the PDFs do."""
    out = io.BytesIO()
    dated = (day.year, day.month, day.day, 0, 0, 0)
    with (
        zipfile.ZipFile(io.BytesIO(package)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for entry in source.infolist():
            info = zipfile.ZipInfo(entry.filename, dated)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, source.read(entry))
    return out.getvalue()
