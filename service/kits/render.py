"""Kit generation: a pure function of (convention, employer, templates).

Nothing here touches the database, the request or the stores, so the same call runs in a request,
a CLI batch or a worker process. The six documents are laid out in one WeasyPrint pass (one font
subset, one PDF write) and then split into one PDF/A-2b file each; the bundle is that single pass
with one bookmark per document. The two contractual pieces also come as DOCX, converted from
the very HTML their PDF lays out (`clauses`): one text for both formats.

Speed (a kit is mostly WeasyPrint's layout and drawing of its ten pages): tables have fixed
layouts with set column widths (the automatic layout measures every cell twice); the PDF is
written plain and `finish_kit` deflates its streams once (WeasyPrint deflates at zlib's slowest
level) and packs the objects in object streams; the layout is freed by reference counting as
soon as the kit is written (`_free_layout`).

Laid out once per convention: the documents of `LAID_OUT_ONCE` (the notice d'information, the
convention's text shared with the CDG's published notice, the enrolment form and the beneficiary
designation) say nothing of the employer or the kit outside a few lines, their `strip`s (banner
subtitle and kit line, the notice's start of cover, the employer's line and contribution, the
footer's reference). A pass of their own lays them out with those places left blank; its layout is
kept (per process, keyed by the hash of that pass's HTML, so any other difference, of convention,
template or wording, is another layout) and its pages join the kit's own pass before the PDF is
written; the kit's lines are then drawn in their places (`pdfforms.TextLine`), in the fields' full
font, as pagination artifacts. A line that would not fit its place (or not in that font) makes the
kit lay the documents out itself, as before: nothing is lost or cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import html as html_lib
import io
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from weasyprint import CSS, HTML
from weasyprint.css.counters import CounterStyle
from weasyprint.layout import LayoutContext
from weasyprint.text.fonts import FontConfiguration

from service import formatting, labels
from service.formatting import file_stem
from service.kits.clauses import DocxMeta, to_docx
from service.kits.pdfforms import (
    Piece,
    SignatureField,
    TextLine,
    encodable,
    finish_kit,
    font_metrics,
    text_width,
)
from service.reference.simulation import Option, Simulation, simulate
from service.reference.templates import TEMPLATES_ROOT
from service.timeutil import DEFAULT_TIMEZONE

#: the PDF files' /Creator and xmp:CreatorTool
CREATOR = "Service des kits PSC prévoyance"
#: the contractual pieces' empty signature fields: (layout anchor prefix, field name, label)
SIGNATURE_FIELDS = (
    ("sig-employer", "SignatureCollectivite", "Signature de la collectivité"),
    ("sig-insurer", "SignatureAssureur", "Signature de l'assureur"),
)


@dataclass(frozen=True)
class DocumentSpec:
    kind: str
    title: str
    requires_signature: bool
    has_docx: bool = False


def _spec(kind: str, requires_signature: bool = False, has_docx: bool = False) -> DocumentSpec:
    return DocumentSpec(kind, labels.KIT_DOCUMENTS[kind], requires_signature, has_docx)


#: the six documents, in the kit's order (their French titles are in `labels.KIT_DOCUMENTS`)
DOCUMENTS: tuple[DocumentSpec, ...] = (
    _spec("special-conditions", requires_signature=True, has_docx=True),
    _spec("information-notice"),
    _spec("enrolment-form"),
    _spec("beneficiary-designation"),
    _spec("membership-agreement", requires_signature=True, has_docx=True),
    _spec("access-letter"),
)
DOCUMENT_KINDS = tuple(d.kind for d in DOCUMENTS)
SPECS = {d.kind: d for d in DOCUMENTS}
#: documents whose per-kit text is only in `strip`s: laid out once per convention (see above)
LAID_OUT_ONCE = ("information-notice", "enrolment-form", "beneficiary-designation")
#: layouts kept per template set (one per convention and wording; a few kilobytes of boxes each)
LAYOUTS_KEPT = 16
PX = 0.75  # CSS pixel → PDF point


@dataclass(frozen=True)
class CdgData:
    code: str
    name: str
    email: str


@dataclass(frozen=True)
class ConventionData:
    reference: str
    insurer: str
    manager: str
    starts_on: date
    ends_on: date
    base_rate: Decimal
    cdg_fee_rate: Decimal
    options: tuple[Option, ...] = ()
    template_set: str = "default"
    insurer_legal_form: str | None = None
    insurer_capital: Decimal | None = None
    insurer_register: str | None = None
    insurer_address: str | None = None
    #: "facultative" or "mandatory" (`reference.models.REGIMES`): the documents' wording follows
    regime: str = "facultative"


@dataclass(frozen=True)
class EmployerData:
    siret: str
    name: str
    kind: str
    kind_label: str
    address: str
    email: str
    headcount: int
    cst_opinion_on: date
    deliberation_on: date
    joins_on: date
    contribution: dict[str, Any]
    signatory_gender: str | None = None


@dataclass(frozen=True)
class KitInput:
    reference: str
    access_code: str
    issued_on: date
    access_code_expires_on: date
    portal_url: str
    cdg: CdgData
    convention: ConventionData
    employer: EmployerData
    #: the start of cover every document states (a first of month; stored on the kit)
    cover_starts_on: date | None = None
    #: the readers' time zone (`TIMEZONE`): the metadata's dates are the issue day at midnight
    timezone: str = DEFAULT_TIMEZONE

    @property
    def cover_start(self) -> date:
        return self.cover_starts_on or self.employer.joins_on


@dataclass(frozen=True)
class RenderedDocument:
    kind: str
    title: str
    requires_signature: bool
    pdf: bytes
    pages: int
    docx: bytes | None = None
    #: the insurer's signature cell: (page within the document, x1, y1, x2, y2) in PDF points
    insurer_box: tuple[int, float, float, float, float] | None = None


@dataclass(frozen=True)
class RenderedKit:
    documents: tuple[RenderedDocument, ...]
    bundle: bytes
    zip: bytes = field(repr=False)

    @property
    def pages(self) -> int:
        return sum(d.pages for d in self.documents)


class RenderError(Exception):
    """A template is missing or broken."""


def _css_string(value: str) -> Markup:
    """A CSS string literal, safe inside a <style> element (no quote, backslash or `<`)."""
    escaped = "".join(f"\\{ord(ch):x} " if ch in '\\"<>&\n' else ch for ch in str(value))
    return Markup(f'"{escaped}"')


class _Environment(SandboxedEnvironment):
    """Memoizes `from_string` (templates compiled from strings are compiled once per process)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._compiled: dict[str, Any] = {}

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        if source not in self._compiled:
            self._compiled[source] = super().from_string(source)
        return self._compiled[source]


class TemplateSet:
    """A template set loaded once per process: Jinja environment, parsed CSS, fonts, DOCX."""

    def __init__(self, name: str, root: Path = TEMPLATES_ROOT) -> None:
        html_dir = root / "html" / name
        if not (html_dir / "kit.html").is_file():
            raise RenderError(f"unknown template set {name!r}")
        self.name = name
        self.html_dir = html_dir
        self.docx_dir = root / "docx" / name
        self.env = _Environment(
            loader=FileSystemLoader([str(html_dir), str(root / "html" / "common")]),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            money=formatting.money,
            percent=formatting.percent,
            long_date=formatting.long_date,
            short_date=formatting.short_date,
            siret=formatting.siret,
            css_string=_css_string,
            of=formatting.of,
            capitalize_first=formatting.capitalize_first,
        )
        self.fonts = FontConfiguration()
        self.stylesheet = CSS(
            filename=str(html_dir / "kit.css"), font_config=self.fonts, base_url=str(html_dir) + "/"
        )
        self.kit_template = self.env.get_template("kit.html")
        #: the contractual pieces' text: one template each, laid out in the PDF and the DOCX
        self.contract_templates = {
            spec.kind: self.env.get_template(f"contract/{spec.kind}.html")
            for spec in DOCUMENTS
            if spec.has_docx
        }
        self.docx_base = (self.docx_dir / "base.docx").read_bytes()
        self._layouts: OrderedDict[str, _OnceLayout] = OrderedDict()
        self._layouts_lock = threading.Lock()
        #: layouts made and reused, for the tests and the bench
        self.layout_stats = {"made": 0, "reused": 0}

    def context(self, data: KitInput) -> dict[str, Any]:
        contribution = data.employer.contribution
        if contribution["mode"] == "flat":
            contribution_lines = [("Tous les agents", Decimal(contribution["amount"]))]
        else:
            contribution_lines = [
                (f"Agents de catégorie {cat}", Decimal(amount))
                for cat, amount in contribution["amounts"].items()
            ]
        employer = data.employer
        context = {
            "kit": data,
            "cdg": data.cdg,
            "convention": data.convention,
            "employer": employer,
            "documents": DOCUMENTS,
            "contribution": contribution,
            "contribution_lines": contribution_lines,
            "contribution_summary": _contribution_summary(contribution),
            "examples": _examples(
                data.convention.base_rate, contribution_lines, regime=data.convention.regime
            ),
            "example": notice_example(data.convention.base_rate),
            "duration_years": data.convention.ends_on.year - data.convention.starts_on.year + 1,
            "access_code": formatting.group_code(data.access_code),
            "who": formatting.designation(
                employer.kind, employer.name, signatory_gender=employer.signatory_gender
            ),
            "insurer_identity": _insurer_identity(data.convention),
            "headcount": formatting.plural(employer.headcount, "agent"),
            "regime": labels.regime_wording(data.convention.regime),
            "sections": DOCUMENTS,
            "layout_once": False,
        }
        context["contracts"] = {
            kind: Markup(template.render(**context, spec=SPECS[kind]))
            for kind, template in self.contract_templates.items()
        }
        return context

    def render(self, data: KitInput) -> RenderedKit:
        context = self.context(data)
        counters = CounterStyle()  # this layout's own: it tells its context from others'
        try:
            return self._render(data, context, counters)
        finally:
            _free_layout(counters)

    def _layout(self, html: str, counters: CounterStyle) -> Any:
        return HTML(string=html, base_url=str(self.html_dir) + "/").render(
            stylesheets=[self.stylesheet], font_config=self.fonts, counter_style=counters
        )

    def _laid_out_once(self, context: dict[str, Any]) -> _OnceLayout:
        """The layout of the `LAID_OUT_ONCE` documents without their per-kit text, made on
        first use and kept per process (keyed by its HTML's hash)."""
        sections = tuple(SPECS[kind] for kind in LAID_OUT_ONCE)
        html = self.kit_template.render(**{**context, "sections": sections, "layout_once": True})
        key = hashlib.sha256(html.encode()).hexdigest()
        with self._layouts_lock:
            layout = self._layouts.get(key)
            if layout is not None:
                self._layouts.move_to_end(key)
                self.layout_stats["reused"] += 1
                return layout
        counters = CounterStyle()
        try:
            document = self._layout(html, counters)
        finally:
            _free_layout(counters)  # the pages keep their boxes; the context is not needed
        layout = _OnceLayout(document, _strip_places(document), _footer_places(document))
        with self._layouts_lock:
            self._layouts[key] = layout
            self.layout_stats["made"] += 1
            while len(self._layouts) > LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
        return layout

    def _render(
        self, data: KitInput, context: dict[str, Any], counters: CounterStyle
    ) -> RenderedKit:
        once = self._laid_out_once(context)
        strips = self.kit_template.render(
            **{**context, "sections": tuple(SPECS[kind] for kind in LAID_OUT_ONCE)}
        )
        placed = _strip_lines(once, _strip_texts(strips), data.reference)
        lines: list[TextLine] = []
        if placed is None:  # a line does not fit its place: the kit lays them out itself
            document = self._layout(self.kit_template.render(**context), counters)
        else:
            own_sections = tuple(spec for spec in DOCUMENTS if spec.kind not in LAID_OUT_ONCE)
            own = self._layout(
                self.kit_template.render(**{**context, "sections": own_sections}), counters
            )
            pages = _pages_by_kind(own, own_sections) | _pages_by_kind(once.document, once.sections)
            document = own.copy([page for spec in DOCUMENTS for page in pages[spec.kind]])
            starts = {spec.kind: document.pages.index(pages[spec.kind][0]) for spec in DOCUMENTS}
            lines = [
                dataclasses.replace(line, page=starts[kind] + line.page) for kind, line in placed
            ]
        # written plain: `finish_kit` deflates the streams once, faster than WeasyPrint does;
        # writing marks the boxes (fields, tags): one kit at a time writes the shared pages
        with once.writing if placed is not None else contextlib.nullcontext():
            bundle = document.write_pdf(
                pdf_variant="pdf/a-2b", pdf_forms=True, pdf_tags=True, uncompressed_pdf=True
            )
        ranges = _page_ranges(document)
        boxes = _insurer_boxes(document, ranges)
        bundle, pdfs = finish_kit(
            bundle,
            pieces=_pieces(document, ranges, data.reference),
            created=datetime.combine(data.issued_on, time.min, tzinfo=ZoneInfo(data.timezone)),
            creator=CREATOR,
            group_labels=_group_labels(document),
            lines=lines,
        )
        documents = []
        for spec, pdf, (start, end) in zip(DOCUMENTS, pdfs, ranges, strict=True):
            docx = self._docx(spec.kind, context) if spec.has_docx else None
            documents.append(
                RenderedDocument(
                    kind=spec.kind,
                    title=spec.title,
                    requires_signature=spec.requires_signature,
                    pdf=pdf,
                    pages=end - start,
                    docx=docx,
                    insurer_box=boxes.get(spec.kind),
                )
            )
        return RenderedKit(
            documents=tuple(documents),
            bundle=bundle,
            zip=_zip(data.reference, documents, bundle, issued_on=data.issued_on),
        )

    def _docx(self, kind: str, context: dict[str, Any]) -> bytes:
        """The DOCX of a contractual piece, from the same HTML as its PDF."""
        data: KitInput = context["kit"]
        title = f"{SPECS[kind].title} – {data.reference}"
        meta = DocxMeta(
            title=title,
            author=data.convention.manager,
            subject=f"Convention de participation {data.convention.reference} – "
            f"{data.employer.name}",
            issued_on=data.issued_on,
            footer=f"Réf. {data.reference} · {SPECS[kind].title}",
        )
        return to_docx(self.docx_base, context["contracts"][kind], meta)


#: the seed's gross monthly salaries for the worked examples
EXAMPLE_SALARIES = ("1500.00", "1700.00", "2000.00")


@dataclass(frozen=True)
class Example:
    """A worked example: one category (or all agents) at one salary."""

    label: str
    base: Decimal
    premium: Decimal
    contribution_paid: Decimal
    employee_share: Decimal


def _examples(
    base_rate: Decimal, lines: list[tuple[str, Decimal]], *, regime: str = "facultative"
) -> list[Example]:
    """Each contribution line at each seed salary: premium = rate × base, the contribution
    capped at the premium, share = premium − contribution (the simulator's rules)."""
    examples = []
    for label, amount in lines:
        for gross in EXAMPLE_SALARIES:
            result = simulate(
                base_rate=base_rate,
                available_options=(),
                elements={"gross": gross},
                contribution=str(amount),
                regime=regime,
            )
            examples.append(
                Example(
                    label=label,
                    base=result.base,
                    premium=result.premium,
                    contribution_paid=result.contribution_paid,
                    employee_share=result.employee_share,
                )
            )
    return examples


def notice_example(base_rate: Decimal) -> Simulation:
    """The notice's example (the convention's, no employer's): the premium at the base rate on
    a monthly base of 1 500,00 €."""
    return simulate(
        base_rate=base_rate, available_options=(), elements={"gross": "1500.00"}, contribution="0"
    )


class InsurerFacts(Protocol):
    """What names the insurer: a `ConventionData` or a stored `Convention`."""

    insurer_legal_form: str | None
    insurer_capital: Decimal | None
    insurer_register: str | None
    insurer_address: str | None


def _insurer_identity(convention: InsurerFacts) -> str:
    """« société anonyme au capital de 681 879 255 €, 340 234 962 RCS Nanterre, dont le siège
    social est … », from the convention's data; empty when none is recorded (also the payroll
    settings' identification)."""
    parts = []
    if convention.insurer_legal_form:
        form = convention.insurer_legal_form
        if convention.insurer_capital is not None:
            form += f" au capital de {formatting.capital(convention.insurer_capital)}"
        parts.append(form)
    elif convention.insurer_capital is not None:
        parts.append(f"capital de {formatting.capital(convention.insurer_capital)}")
    if convention.insurer_register:
        parts.append(f"immatriculée sous le n° {convention.insurer_register}")
    if convention.insurer_address:
        parts.append(f"siège social : {convention.insurer_address}")
    return ", ".join(parts)


def _contribution_summary(contribution: dict[str, Any]) -> str:
    """`15,00 € par mois` or `7,00 € (catégorie A), 12,00 € (catégorie B) … par mois`."""
    if contribution["mode"] == "flat":
        return f"{formatting.money(contribution['amount'])} par mois"
    parts = [
        f"{formatting.money(amount)} (catégorie {cat})"
        for cat, amount in contribution["amounts"].items()
    ]
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " et " + parts[-1]
    return f"{joined} par mois"


def _free_layout(counters: CounterStyle) -> None:
    """Frees a kit's layout (some 40 000 objects) by reference counting, now.

    WeasyPrint's layout context refers to itself (through its image loader), so the boxes,
    styles and pages it holds would wait for the cyclic garbage collector, whose pass over them
    costs a tenth of a kit. Emptying the context, once the kit is written, breaks that cycle.
    Only the context of this layout (found by its counter styles) is touched: another thread
    may be laying out another kit. The context is among the youngest objects (the collector is
    paused while rendering); when it is not, the collector frees it as before.
    """
    for obj in gc.get_objects(generation=0):
        if type(obj) is LayoutContext and obj.counter_style is counters:
            obj.__dict__.clear()  # (a kit laid out twice, see `_render`, has two)


@cache
def template_set(name: str) -> TemplateSet:
    return TemplateSet(name)


def render_kit(data: KitInput) -> RenderedKit:
    """Render the whole kit: six PDFs, two DOCX, the bundle and the ZIP.

    The cyclic garbage collector is paused while rendering: WeasyPrint allocates many long-lived
    objects, which makes the collector rescan the whole heap (a loaded app's too) several times
    per kit; measured, that is a quarter of the rendering time. Reference counting still frees
    what it can, and the cycles are collected when the kit is done.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return template_set(data.convention.template_set).render(data)
    finally:
        if was_enabled:
            gc.enable()


def _page_ranges(document: Any) -> list[tuple[int, int]]:
    """Page ranges of each document, found through the `doc-<kind>` anchors of the layout."""
    starts: dict[str, int] = {}
    for number, page in enumerate(document.pages):
        for anchor in page.anchors:
            if anchor.startswith("doc-") and anchor[4:] in SPECS:
                starts.setdefault(anchor[4:], number)
    if set(starts) != set(DOCUMENT_KINDS):
        raise RenderError(f"documents missing from the layout: {set(DOCUMENT_KINDS) - set(starts)}")
    ordered = [starts[kind] for kind in DOCUMENT_KINDS] + [len(document.pages)]
    return [(ordered[i], ordered[i + 1]) for i in range(len(DOCUMENTS))]


def _signature_cells(
    document: Any, ranges: list[tuple[int, int]], prefix: str
) -> dict[str, tuple[int, float, float, float, float]]:
    """Where each contractual piece's `<prefix>-<kind>` signature cell landed: (page within the
    document, x1, y1, x2, y2) in PDF points, the lower 60 points of the cell, under its text."""
    boxes = {}
    px = 0.75  # CSS pixel → PDF point
    for spec, (start, end) in zip(DOCUMENTS, ranges, strict=True):
        for number in range(start, end):
            page = document.pages[number]
            anchor = page.anchors.get(f"{prefix}-{spec.kind}")
            if anchor is None:
                continue
            x1, _y1, x2, y2 = anchor
            bottom = (page.height - y2) * px  # PDF y grows upwards
            boxes[spec.kind] = (number - start, x1 * px + 6, bottom + 6, x2 * px - 6, bottom + 66)
    return boxes


def _insurer_boxes(
    document: Any, ranges: list[tuple[int, int]]
) -> dict[str, tuple[int, float, float, float, float]]:
    """Where each contractual piece's insurer signature cell landed, for the visible stamp."""
    return _signature_cells(document, ranges, "sig-insurer")


def _pieces(document: Any, ranges: list[tuple[int, int]], reference: str) -> list[Piece]:
    """The documents' page ranges, titles and empty signature fields (pieces to sign)."""
    cells = {prefix: _signature_cells(document, ranges, prefix) for prefix, *_ in SIGNATURE_FIELDS}
    pieces = []
    for spec, (start, end) in zip(DOCUMENTS, ranges, strict=True):
        fields = []
        if spec.requires_signature:
            for prefix, name, label in SIGNATURE_FIELDS:
                if spec.kind not in cells[prefix]:
                    raise RenderError(f"no {prefix} cell in {spec.kind}")
                page, *rect = cells[prefix][spec.kind]
                fields.append(
                    SignatureField(name, f"{label} ({spec.title})", start + page, tuple(rect))  # type: ignore[arg-type]
                )
        pieces.append(Piece(f"{spec.title} – {reference}", start, end, tuple(fields), spec.title))
    return pieces


def _text(element: Any) -> str:
    return " ".join("".join(element.itertext()).split())


def _group_labels(document: Any) -> dict[str, str]:
    """French labels of radio groups and buttons, read from the HTML: `name` → the `<legend>`
    of the group's `<fieldset>`, `name=value` → the button's whole `<label>` (WeasyPrint's own
    /TU keeps a label's first line only)."""
    labels: dict[str, str] = {}
    elements = (f.element for page in document.pages for f in page.forms if f is not None)
    forms = {id(element): element for element in elements}
    for form in forms.values():
        by_id = {label.get("for"): label for label in form.iter("label") if label.get("for")}
        for label in form.iter("label"):
            for element in label.iter("input"):
                by_id.setdefault(id(element), label)
        for fieldset in form.iter("fieldset"):
            legend = fieldset.find("legend")
            for element in fieldset.iter("input"):
                name, value = element.get("name"), element.get("value")
                if not name or element.get("type") != "radio":
                    continue
                if legend is not None:
                    labels.setdefault(name, _text(legend))
                label = by_id.get(element.get("id"))
                if label is None:  # (an element without children is falsy: no `or`)
                    label = by_id.get(id(element))
                if label is not None and value is not None:
                    labels[f"{name}={value}"] = _text(label)
    return labels


# -- documents laid out once per convention ------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where a strip's lines go: its page within its document, its content box (CSS px from
    the page's top left), font size (px), line height (px) and colour."""

    kind: str
    page: int
    x: float
    y: float
    width: float
    height: float
    size: float
    line_height: float
    color: tuple[float, float, float]
    page_height: float


@dataclass(frozen=True)
class _OnceLayout:
    document: Any
    strips: dict[str, _Place]
    #: each page's footer line (the kit's reference and the document's title)
    footers: tuple[_Place, ...]
    #: held while a kit's PDF is written with these pages (WeasyPrint marks their boxes)
    writing: threading.Lock = field(default_factory=threading.Lock, compare=False)

    @property
    def sections(self) -> tuple[DocumentSpec, ...]:
        return tuple(SPECS[kind] for kind in LAID_OUT_ONCE)


def _rgb(style: Any) -> tuple[float, float, float]:
    color = style["color"]
    values = color.to("srgb").coordinates if hasattr(color, "to") else color[:3]
    return tuple(round(float(v), 4) for v in values[:3])  # type: ignore[return-value]


def _line_height(style: Any) -> float:
    """The used line height (px) of a block's lines: a number times the font size, a length,
    or `normal` (the font's ascent and descent)."""
    value, size = style["line_height"], float(style["font_size"])
    if isinstance(value, int | float):
        return float(value) * size
    if getattr(value, "unit", None) == "px":
        return float(value.value)
    ascent, descent = font_metrics()
    return (ascent - descent) * size


def _kind_of(document: Any, number: int) -> tuple[str, int]:
    """The kind of the document page `number` belongs to, and the page's index within it (a
    document's section keeps its `doc-` anchor on each of its pages: its first page counts)."""
    start, kind = 0, ""
    for index, page in enumerate(document.pages[: number + 1]):
        for anchor in page.anchors:
            if anchor.startswith("doc-") and anchor[4:] in SPECS and anchor[4:] != kind:
                start, kind = index, anchor[4:]
    return kind, number - start


def _place(box: Any, kind: str, page: int, page_height: float) -> _Place:
    return _Place(
        kind=kind,
        page=page,
        x=box.content_box_x(),
        y=box.content_box_y(),
        width=box.width,
        height=box.height,
        size=float(box.style["font_size"]),
        line_height=_line_height(box.style),
        color=_rgb(box.style),
        page_height=page_height,
    )


def _strip_places(document: Any) -> dict[str, _Place]:
    places = {}
    for number, page in enumerate(document.pages):
        kind, within = _kind_of(document, number)
        for box in page._page_box.descendants():
            element = getattr(box, "element", None)
            ident = element.get("id", "") if element is not None else ""
            if ident.startswith("strip-") and ident[6:] not in places and box.element_tag == "div":
                places[ident[6:]] = _place(box, kind, within, page.height)
    return places


def _footer_places(document: Any) -> tuple[_Place, ...]:
    """The footer's left box of every page: where the kit's reference goes."""
    places = []
    for number, page in enumerate(document.pages):
        kind, within = _kind_of(document, number)
        margin = next(
            box
            for box in page._page_box.children
            if getattr(box, "at_keyword", None) == "@bottom-left"
        )
        line = next(box for box in margin.descendants() if type(box).__name__ == "LineBox")
        place = _place(margin, kind, within, page.height)
        places.append(
            _Place(
                **{**place.__dict__, "y": line.position_y, "height": line.height}
                | {"line_height": line.height}
            )
        )
    return tuple(places)


def _pages_by_kind(document: Any, sections: tuple[DocumentSpec, ...]) -> dict[str, list[Any]]:
    starts = {}
    for number, page in enumerate(document.pages):
        for anchor in page.anchors:
            if anchor.startswith("doc-") and anchor[4:] in SPECS:
                starts.setdefault(anchor[4:], number)
    if set(starts) != {spec.kind for spec in sections}:
        raise RenderError(f"documents missing from the layout: {sections}")
    ordered = [*sorted(starts.values()), len(document.pages)]
    by_start = {start: kind for kind, start in starts.items()}
    return {
        by_start[ordered[i]]: document.pages[ordered[i] : ordered[i + 1]]
        for i in range(len(ordered) - 1)
    }


_STRIP = re.compile(
    r'<div class="[^"]*" id="strip-([^"]+)" data-lines="\d+">(.*?)</div>', re.DOTALL
)


def _strip_texts(html: str) -> dict[str, str]:
    """The kit's text of every strip, from the kit's HTML of the documents laid out once."""
    return {
        name: " ".join(html_lib.unescape(re.sub(r"<[^>]*>", "", inner)).split())
        for name, inner in _STRIP.findall(html)
    }


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Lines of at most `width` (px, at `size` px), broken at spaces."""
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(candidate, size) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _lines_at(place: _Place, lines: list[str]) -> list[tuple[str, TextLine]]:
    """The lines in their place: (document, line on the document's page)."""
    ascent, descent = font_metrics()
    half_leading = (place.line_height - (ascent - descent) * place.size) / 2
    return [
        (
            place.kind,
            TextLine(
                page=place.page,
                x=place.x * PX,
                y=(place.page_height - place.y - n * place.line_height - half_leading) * PX
                - ascent * place.size * PX,
                size=place.size * PX,
                color=place.color,
                text=line,
            ),
        )
        for n, line in enumerate(lines)
    ]


def _strip_lines(
    once: _OnceLayout, texts: dict[str, str], reference: str
) -> list[tuple[str, TextLine]] | None:
    """The kit's lines in their places, or None when one does not fit (or a strip of the
    layout has no text, or a text no place)."""
    if set(texts) != set(once.strips):
        return None
    drawn: list[tuple[str, TextLine]] = []
    for name, text in texts.items():
        place = once.strips[name]
        if not encodable(text):
            return None
        lines = _wrap(text, place.width, place.size) if text else []
        room = int(place.height / place.line_height + 0.01)
        if len(lines) > room or any(text_width(line, place.size) > place.width for line in lines):
            return None
        drawn += _lines_at(place, lines)
    for place in once.footers:
        text = f"Réf. {reference} · {SPECS[place.kind].title}"
        if not encodable(text) or text_width(text, place.size) > place.width:
            return None
        drawn += _lines_at(place, [text])
    return drawn


def _zip(
    reference: str, documents: list[RenderedDocument], bundle: bytes, *, issued_on: date
) -> bytes:
    """`<reference>/01-conditions-particulieres.pdf`…, every entry dated the day of issue."""
    buffer = io.BytesIO()
    dated = (issued_on.year, issued_on.month, issued_on.day, 0, 0, 0)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, doc in enumerate(documents, start=1):
            name = f"{reference}/{number:02d}-{file_stem(doc.title)}"
            archive.writestr(zipfile.ZipInfo(f"{name}.pdf", dated), doc.pdf)
            if doc.docx is not None:
                archive.writestr(zipfile.ZipInfo(f"{name}.docx", dated), doc.docx)
        archive.writestr(zipfile.ZipInfo(f"{reference}/kit-complet.pdf", dated), bundle)
    return buffer.getvalue()
