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

Laid out once per convention: a kit says little of its employer and nothing else of itself, and
all of it in `strip`s (templates' macros.html): the parties, the paragraphs naming the employer,
its dates and contribution, the worked examples' amounts, the letter's recipient and code, the
banners' kit line and the footers' reference. A pass lays the whole kit out with those places
left blank (each as tall as the kit's text needs, its lines counted at the place's width with the
fonts' metrics), writes and finishes it (`_Shape`); that pass is kept per process, keyed by the
hash of its HTML, so every kit whose strips take as many lines (the same convention, wording,
template and number of contribution categories) reuses it. A kit then only draws its lines in
their places (`pdfforms.stamp`: the kit's fonts, the place's size, colour and alignment,
justified lines spaced as the layout's) on each of its files and dates them: no layout, no
drawing of pages, no font subsetting per kit. A text that cannot be drawn so (a word wider than
its place, a character outside the fonts' encoding) makes the kit lay itself out whole, as
before: nothing is lost or cut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import html as html_lib
import io
import json
import logging
import os
import re
import shutil
import threading
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from weasyprint import CSS, HTML
from weasyprint.css.counters import CounterStyle
from weasyprint.formatting_structure.boxes import BlockContainerBox
from weasyprint.layout import LayoutContext
from weasyprint.text.fonts import FontConfiguration

from service import formatting, labels
from service.formatting import file_stem
from service.kits.clauses import DocxMeta, to_docx
from service.kits.pdfforms import (
    Piece,
    SignatureField,
    Slot,
    StripTarget,
    TextLine,
    encodable,
    finish_kit,
    font_metrics,
    stamp,
    text_width,
)
from service.reference.simulation import Option, Simulation, simulate
from service.reference.templates import TEMPLATES_ROOT
from service.timeutil import DEFAULT_TIMEZONE

LOGGER = logging.getLogger(__name__)

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
#: kits laid out once kept per template set (one per convention, wording and shape; ~0.5 MB each)
LAYOUTS_KEPT = 32
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
        self._layouts: OrderedDict[str, _Shape] = OrderedDict()
        self._layouts_lock = threading.Lock()
        #: the latest place of each strip (its width, for the counts), rows' strips as one
        self._places: dict[str, _Place] = {}
        #: layouts made and reused, for the tests and the bench
        self.layout_stats = {"made": 0, "reused": 0, "loaded": 0, "whole": 0}

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
            "strip_lines": {},
        }
        context["contracts"] = {
            kind: Markup(template.render(**context, spec=SPECS[kind]))
            for kind, template in self.contract_templates.items()
        }
        return context

    def render(self, data: KitInput) -> RenderedKit:
        context = self.context(data)
        html = self.kit_template.render(**context)
        rendered = self._stamped(data, context, html)
        if rendered is not None:
            return rendered
        with self._layouts_lock:
            self.layout_stats["whole"] += 1
        LOGGER.warning("kit %s laid out whole: a text cannot be drawn in its place", data.reference)
        counters = CounterStyle()  # this layout's own: it tells its context from others'
        try:
            return self._laid_out_whole(data, context, html, counters)
        finally:
            _free_layout(counters)

    def _layout(self, html: str, counters: CounterStyle) -> Any:
        return HTML(string=html, base_url=str(self.html_dir) + "/").render(
            stylesheets=[self.stylesheet], font_config=self.fonts, counter_style=counters
        )

    def _once_html(self, context: dict[str, Any], counts: dict[str, int]) -> str:
        """The kit's HTML with its strips blank, `counts` lines tall (the macro's default else)."""
        once = {**context, "layout_once": True, "strip_lines": counts}
        once["contracts"] = {
            kind: Markup(template.render(**once, spec=SPECS[kind]))
            for kind, template in self.contract_templates.items()
        }
        return self.kit_template.render(**once)

    def _shape(self, html: str, texts: dict[str, Runs]) -> _Shape:
        """The kit laid out, written and finished once for this HTML (kept per process)."""
        key = hashlib.sha256(html.encode()).hexdigest()
        with self._layouts_lock:
            shape = self._layouts.get(key)
            if shape is not None:
                self._layouts.move_to_end(key)
                self.layout_stats["reused"] += 1
                return shape
        folder = _layouts_dir
        kept = folder / f"{key}-{_layout_version(self.html_dir)}" if folder is not None else None
        with _kept_lock(kept):  # the machine's other processes wait, then read it
            shape = _load_shape(kept) if kept is not None else None
            made = shape is None
            if shape is None:
                counters = CounterStyle()
                try:
                    shape = _make_shape(self._layout(html, counters), texts)
                finally:
                    _free_layout(counters)
                if kept is not None:
                    if kept.exists():  # kept but damaged: set aside, then replaced
                        aside = kept.with_name(f".{kept.name}.{uuid.uuid4().hex}")
                        with contextlib.suppress(OSError):
                            os.rename(kept, aside)
                        shutil.rmtree(aside, ignore_errors=True)
                    _store_shape(kept, shape)
        with self._layouts_lock:
            self._layouts[key] = shape
            self.layout_stats["made" if made else "loaded"] += 1
            while len(self._layouts) > LAYOUTS_KEPT:
                self._layouts.popitem(last=False)
        return shape

    def _stamped(self, data: KitInput, context: dict[str, Any], html: str) -> RenderedKit | None:
        """The kit from its shape laid out once, or None when its text cannot be drawn so."""
        texts = _strip_texts(html)
        if texts is None:  # a strip named twice
            return None
        # the lines each strip takes, counted at the widths of a kit of the same strips (the
        # widths do not depend on the lines reserved): most kits find their shape first time
        counts = {}
        for name, runs in texts.items():
            known = self._places.get(_generic(name))
            lines = _fit(known, runs) if known is not None else None
            if known is not None and lines is not None:
                counts[name] = max(len(lines), known.room)
        for _attempt in range(3):
            shape = self._shape(self._once_html(context, counts), texts)
            if set(texts) != set(shape.strips):
                return None
            self._places.update({_generic(name): place for name, place in shape.strips.items()})
            fitted: dict[str, list[Line]] = {}
            for name, runs in texts.items():
                lines = _fit(shape.strips[name], runs)
                if lines is None:
                    return None
                fitted[name] = lines
            counts = {
                name: max(len(lines), shape.strips[name].room) for name, lines in fitted.items()
            }
            if counts == {name: place.lines for name, place in shape.strips.items()}:
                break
        else:
            return None
        if any(
            place.height + 0.5 < place.lines * place.line_height for place in shape.strips.values()
        ):
            return None  # a strip's class sets a line height its reserved height does not
        placed = _placed_lines(shape.strips, fitted)
        for place in shape.footers:
            footer = _fit(
                place, [("regular", f"Réf. {data.reference} · {SPECS[place.kind].title}")]
            )
            if footer is None or len(footer) != 1:
                return None
            placed += _lines_at(place, footer)
        starts = _starts(shape.ranges)
        for kind, line in placed:  # every font the lines use is offered by their page
            offered = shape.fonts.get(starts[kind] + line.page, set())
            if any(variant not in offered for variant, _text in line.runs):
                return None
        created = datetime.combine(data.issued_on, time.min, tzinfo=ZoneInfo(data.timezone))
        documents, bundle_lines = [], []
        for spec, pdf, (start, end) in zip(DOCUMENTS, shape.pdfs, shape.ranges, strict=True):
            own = [line for kind, line in placed if kind == spec.kind]
            bundle_lines += [dataclasses.replace(line, page=start + line.page) for line in own]
            documents.append(
                RenderedDocument(
                    kind=spec.kind,
                    title=spec.title,
                    requires_signature=spec.requires_signature,
                    pdf=stamp(
                        pdf,
                        own,
                        title=f"{spec.title} – {data.reference}",
                        created=created,
                        slots=shape.slots_of(start, end),
                    ),
                    pages=end - start,
                    docx=self._docx(spec.kind, context) if spec.has_docx else None,
                    insurer_box=shape.insurer_boxes.get(spec.kind),
                )
            )
        bundle = stamp(
            shape.bundle,
            bundle_lines,
            title=_html_title(html),
            created=created,
            slots=shape.slots,
        )
        return RenderedKit(documents=tuple(documents), bundle=bundle)

    def _laid_out_whole(
        self, data: KitInput, context: dict[str, Any], html: str, counters: CounterStyle
    ) -> RenderedKit:
        """The kit laid out with its own text (a strip's text that cannot be drawn in place)."""
        document = self._layout(html, counters)
        # written plain: `finish_kit` deflates the streams once, faster than WeasyPrint does
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
        return RenderedKit(documents=tuple(documents), bundle=bundle)

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


#: where the kits laid out once are kept for every process of this machine (`keep_layouts_in`)
_layouts_dir: Path | None = None


def keep_layouts_in(folder: Path | None) -> None:
    """Keep the kits laid out once in `folder` (the app's instance folder), so that the worker
    processes and the web server of a machine lay each shape out once between them, and once
    across restarts; in memory only when None."""
    global _layouts_dir
    _layouts_dir = folder


#: the code and assets a kept layout depends on besides its HTML (a new version: new layouts)
_LAYOUT_SOURCES = (
    Path(__file__),
    Path(__file__).with_name("pdfforms.py"),
)


@contextlib.contextmanager
def _kept_lock(kept: Path | None) -> Any:
    """An exclusive lock on a kept layout while it is read or made (a file lock: processes and
    threads alike), so that one lays it out and the others read it."""
    if kept is None:
        yield
        return
    try:
        kept.parent.mkdir(exist_ok=True)
        handle = open(kept.with_name(f".{kept.name}.lock"), "a")  # noqa: SIM115
    except OSError:
        yield  # (a folder gone: no lock, nothing kept)
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: the libraries whose output a kept layout is
_LAYOUT_LIBRARIES = ("weasyprint", "pydyf", "pikepdf", "fonttools")


@cache
def _layout_version(html_dir: Path) -> str:
    digest = hashlib.sha256()
    for library in _LAYOUT_LIBRARIES:
        digest.update(f"{library}={package_version(library)}\0".encode())
    assets = sorted(html_dir.glob("*.css")) + sorted((html_dir.parent / "common").rglob("*.ttf"))
    for path in (*_LAYOUT_SOURCES, *assets):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _shape_files(shape: _Shape) -> dict[str, bytes]:
    return {"bundle.pdf": shape.bundle} | {f"{n}.pdf": pdf for n, pdf in enumerate(shape.pdfs)}


def _store_shape(folder: Path, shape: _Shape) -> None:
    """Writes the shape into `folder` atomically (a complete folder renamed into place; a
    concurrent writer of the same shape wins, this one's copy is dropped)."""
    files = _shape_files(shape)
    meta = {
        "ranges": shape.ranges,
        "insurer_boxes": shape.insurer_boxes,
        "strips": {name: dataclasses.asdict(place) for name, place in shape.strips.items()},
        "footers": [dataclasses.asdict(place) for place in shape.footers],
        "slots": {
            str(page): [[slot.name, slot.index, slot.matrix] for slot in slots]
            for page, slots in shape.slots.items()
        },
        "fonts": {str(page): sorted(variants) for page, variants in shape.fonts.items()},
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}"
    try:
        temporary.mkdir()  # (its folder made by `_kept_lock`, not its parents: gone stays gone)
        for name, data in files.items():
            (temporary / name).write_bytes(data)
        (temporary / "shape.json").write_text(json.dumps(meta), encoding="utf-8")
        os.rename(temporary, folder)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)


def _place_from(data: dict[str, Any]) -> _Place:
    return _Place(**{**data, "color": tuple(data["color"])})


def _load_shape(folder: Path) -> _Shape | None:
    """The shape kept in `folder`, or None when there is none or it is not whole."""
    try:
        meta = json.loads((folder / "shape.json").read_text(encoding="utf-8"))
        files = {name: (folder / name).read_bytes() for name in meta["sha256"]}
        if any(hashlib.sha256(data).hexdigest() != meta["sha256"][n] for n, data in files.items()):
            return None
        return _shape_from(meta, files)
    except (OSError, ValueError, KeyError, TypeError, IndexError):  # absent, or not whole
        return None


def _shape_from(meta: dict[str, Any], files: dict[str, bytes]) -> _Shape:
    return _Shape(
        bundle=files["bundle.pdf"],
        pdfs=tuple(files[f"{n}.pdf"] for n in range(len(DOCUMENTS))),
        ranges=tuple(tuple(r) for r in meta["ranges"]),  # type: ignore[misc]
        insurer_boxes={k: tuple(v) for k, v in meta["insurer_boxes"].items()},  # type: ignore[misc]
        strips={name: _place_from(place) for name, place in meta["strips"].items()},
        footers=tuple(_place_from(place) for place in meta["footers"]),
        slots={
            int(page): [Slot(name, index, tuple(matrix)) for name, index, matrix in slots]  # type: ignore[arg-type]
            for page, slots in meta["slots"].items()
        },
        fonts={int(page): set(variants) for page, variants in meta["fonts"].items()},
    )


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


# -- kits laid out once per convention ----------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where a strip's lines go: its page within its document, its content box (CSS px from
    the page's top left), font (variant, size in px), line height (px), colour, alignment,
    letter spacing (px) and the lines its layout reserved."""

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
    variant: str = "regular"
    align: str = "left"
    letter_spacing: float = 0.0
    lines: int = 1
    #: the lines reserved whatever the text (`room`) and the strips it follows (`flow`)
    room: int = 1
    flow: str = ""


@dataclass(frozen=True)
class _Shape:
    """A kit laid out with its strips blank, written and finished once: its files, to be
    stamped with each kit's lines (`pdfforms.stamp`), and where those lines go."""

    bundle: bytes
    pdfs: tuple[bytes, ...]
    ranges: tuple[tuple[int, int], ...]
    insurer_boxes: dict[str, tuple[int, float, float, float, float]]
    strips: dict[str, _Place]
    #: each page's footer line (the kit's reference and the document's title)
    footers: tuple[_Place, ...]
    #: the strips' slots in the pages' content, by page of the bundle
    slots: dict[int, list[Slot]]
    #: the lines' fonts each page offers (variants), by page of the bundle
    fonts: dict[int, set[str]] = field(default_factory=dict)

    def slots_of(self, start: int, end: int) -> dict[int, list[Slot]]:
        """The slots of the pages [start, end), numbered within them (a document's file)."""
        return {page - start: slots for page, slots in self.slots.items() if start <= page < end}


def _starts(ranges: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Each document's first page in the kit, from the documents' page ranges."""
    return {spec.kind: start for spec, (start, _end) in zip(DOCUMENTS, ranges, strict=True)}


def _generic(name: str) -> str:
    """A strip's name, its row number aside (the rows of a table are as wide)."""
    return re.sub(r"-\d+-", "-#-", name)


def _make_shape(document: Any, texts: dict[str, Runs]) -> _Shape:
    """The kit's files from its layout with the strips blank, each page offering the fonts its
    strips' texts use (`texts`: a kit's, whose marks of emphasis every kit of the shape has)."""
    ranges = _page_ranges(document)
    strips = _strip_places(document)
    footers = _footer_places(document)
    starts = _starts(ranges)
    text_pages: dict[int, set[str]] = {}
    for place in footers:
        text_pages.setdefault(starts[place.kind] + place.page, set()).add(place.variant)
    for name, place in strips.items():
        text_pages.setdefault(starts[place.kind] + place.page, set()).update(
            _variant(place.variant, bold=bold, italic=italic)
            for bold, italic, _text in texts.get(name, ())
        )
    targets: dict[int, list[StripTarget]] = {}
    for name, place in strips.items():
        targets.setdefault(starts[place.kind] + place.page, []).append(
            StripTarget(
                name,
                x_min=place.x - 1,
                x_max=place.x + place.width + 1,
                y_min=place.y,
                y_max=place.y + place.line_height,
            )
        )
    pdf = document.write_pdf(
        pdf_variant="pdf/a-2b", pdf_forms=True, pdf_tags=True, uncompressed_pdf=True
    )
    slots: dict[int, list[Slot]] = {}
    bundle, pdfs = finish_kit(
        pdf,
        pieces=_pieces(document, ranges, ""),
        created=datetime(2000, 1, 1, tzinfo=ZoneInfo(DEFAULT_TIMEZONE)),  # each kit's its own
        creator=CREATOR,
        group_labels=_group_labels(document),
        text_pages=text_pages,
        strip_targets=targets,
        slots=slots,
    )
    return _Shape(
        bundle=bundle,
        pdfs=tuple(pdfs),
        ranges=tuple(ranges),
        insurer_boxes=_insurer_boxes(document, ranges),
        strips=strips,
        footers=footers,
        slots=slots,
        fonts=text_pages,
    )


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


def _variant(base: str, *, bold: bool = False, italic: bool = False) -> str:
    """The font variant of `base` made bold and/or italic."""
    bold = bold or base.startswith("bold")
    italic = italic or base.endswith("italic")
    return {
        (False, False): "regular",
        (True, False): "bold",
        (False, True): "italic",
        (True, True): "bold-italic",
    }[(bold, italic)]


def _style_variant(style: Any) -> str:
    return _variant(
        "regular",
        bold=int(style["font_weight"]) >= 600,
        italic=style["font_style"] in ("italic", "oblique"),
    )


def _align(style: Any) -> str:
    value = str(style["text_align_all"])
    return {"justify": "justify", "right": "right", "end": "right", "center": "center"}.get(
        value, "left"
    )


def _letter_spacing(style: Any) -> float:
    value = style["letter_spacing"]
    if value == "normal":
        return 0.0
    return float(getattr(value, "value", value))


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
    element = getattr(box, "element", None)
    attributes = element.attrib if element is not None else {}
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
        variant=_style_variant(box.style),
        align=_align(box.style),
        letter_spacing=_letter_spacing(box.style),
        lines=int(attributes.get("data-lines") or 1),
        room=int(attributes.get("data-room") or 1),
        flow=attributes.get("data-flow") or "",
    )


def _strip_places(document: Any) -> dict[str, _Place]:
    places = {}
    for number, page in enumerate(document.pages):
        kind, within = _kind_of(document, number)
        for box in page._page_box.descendants():
            element = getattr(box, "element", None)
            ident = element.get("id", "") if element is not None else ""
            if (
                ident.startswith("strip-")
                and ident[6:] not in places
                and isinstance(box, BlockContainerBox)
                and getattr(box, "pseudo_type", None) is None
            ):
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
            dataclasses.replace(
                place, y=line.position_y, height=line.height, line_height=line.height, align="left"
            )
        )
    return tuple(places)


_STRIP = re.compile(
    r'<(\w+) class="[^"]*" id="strip-([^"]+)" data-lines="\d+">(.*?)</\1>', re.DOTALL
)
_TAG = re.compile(r"<(/?)(\w+)[^>]*>")
_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)

#: a strip's text: (bold, italic, text) runs, as its HTML marks them
Runs = list[tuple[bool, bool, str]]


def _runs(inner: str) -> Runs:
    """The text of a strip's HTML in runs, `<strong>`/`<b>` and `<em>`/`<i>` kept, other tags
    dropped, spaces collapsed."""
    runs: Runs = []
    bold = italic = 0
    position = 0
    for match in [*_TAG.finditer(inner), None]:
        end = match.start() if match is not None else len(inner)
        text = html_lib.unescape(inner[position:end])
        if text:
            runs.append((bold > 0, italic > 0, text))
        if match is None:
            break
        position = match.end()
        step = -1 if match.group(1) else 1
        if match.group(2) in ("strong", "b"):
            bold = max(0, bold + step)
        elif match.group(2) in ("em", "i"):
            italic = max(0, italic + step)
    # collapse white space across runs, as the layout would
    collapsed: Runs = []
    previous_space = True
    for is_bold, is_italic, text in runs:
        text = re.sub(r"\s+", " ", text)
        if previous_space:
            text = text.lstrip(" ")
        if text:
            previous_space = text.endswith(" ")
            collapsed.append((is_bold, is_italic, text))
    if collapsed and collapsed[-1][2].endswith(" "):
        last = collapsed.pop()
        if last[2].rstrip(" "):
            collapsed.append((last[0], last[1], last[2].rstrip(" ")))
    return collapsed


def _strip_texts(html: str) -> dict[str, Runs] | None:
    """The kit's text of every strip, from the kit's HTML (None when a strip is named twice)."""
    found = _STRIP.findall(html)
    texts = {name: _runs(inner) for _tag, name, inner in found}
    return texts if len(texts) == len(found) else None


def _html_title(html: str) -> str:
    match = _TITLE.search(html)
    return " ".join(html_lib.unescape(match.group(1)).split()) if match else "Kit"


#: a line to draw: its (variant, text) runs
Line = list[tuple[str, str]]


_HYPHENATED = re.compile(r"(?<=[^\W\d_]-)(?=[^\W\d_])")


def _fit(place: _Place, runs: Runs | Line) -> list[Line] | None:
    """The strip's text broken into lines to fit the place's width (greedy, as the layout
    breaks lines: at spaces and after a hyphen between letters), or None when a piece is
    wider than the place or a character cannot be drawn."""
    words: list[Line] = [[]]
    for run in runs:
        if len(run) == 3:
            is_bold, is_italic, text = run  # type: ignore[misc]
            variant = _variant(place.variant, bold=is_bold, italic=is_italic)
        else:
            variant, text = run  # type: ignore[misc]
        if not encodable(text, variant):
            return None
        for index, part in enumerate(text.split(" ")):
            if index > 0:
                words.append([])
            if part:
                words[-1].append((variant, part))
    lines: list[Line] = []
    width = 0.0
    for word in (word for word in words if word):
        space = _width(place, [(word[0][0], " ")])
        # a line may end after a hyphen between letters, as in the layout (UAX #14)
        for number, piece in enumerate(_pieces_of(word)):
            piece_width = _width(place, piece)
            if piece_width > place.width + 0.01:
                return None
            gap = space if number == 0 else 0.0
            if lines and width + gap + piece_width <= place.width + 0.01:
                lines[-1] += ([(word[0][0], " ")] if number == 0 else []) + piece
                width += gap + piece_width
            else:
                lines.append(list(piece))
                width = piece_width
    return [_merged(line) for line in lines]


def _pieces_of(word: Line) -> list[Line]:
    """A word cut after each hyphen between two letters (`Saint-` `Antonin-` `de-` …)."""
    pieces: list[Line] = [[]]
    for variant, text in word:
        parts = _HYPHENATED.split(text)
        for index, part in enumerate(parts):
            if index > 0:
                pieces.append([])
            if part:
                pieces[-1].append((variant, part))
    return [piece for piece in pieces if piece]


def _width(place: _Place, line: Line) -> float:
    characters = sum(len(text) for _variant, text in line)
    return (
        sum(text_width(text, place.size, variant) for variant, text in line)
        + characters * place.letter_spacing
    )


def _merged(line: Line) -> Line:
    merged: Line = []
    for variant, text in line:
        if merged and merged[-1][0] == variant:
            merged[-1] = (variant, merged[-1][1] + text)
        else:
            merged.append((variant, text))
    return merged


def _placed_lines(
    places: dict[str, _Place], texts: dict[str, list[Line]]
) -> list[tuple[str, TextLine]]:
    """Every strip's lines in its place, a strip of a flow moved up by the lines its
    predecessors on the page left unused."""
    drawn: list[tuple[str, TextLine]] = []
    shrink: dict[tuple[str, int, str], float] = {}
    for name, place in sorted(
        places.items(), key=lambda item: (item[1].kind, item[1].page, item[1].y)
    ):
        lines = texts[name]
        flow = (place.kind, place.page, place.flow)
        shift = shrink.get(flow, 0.0) if place.flow else 0.0
        drawn += _lines_at(place, lines, shift=shift, strip=name)
        if place.flow:
            shrink[flow] = shift + (place.lines - len(lines)) * place.line_height
    return drawn


def _lines_at(
    place: _Place, lines: list[Line], shift: float = 0.0, strip: str = ""
) -> list[tuple[str, TextLine]]:
    """The lines in their place (`shift` px higher): (document, line on the document's page),
    aligned as the place is (a justified place's lines but the last spread over its width)."""
    ascent, descent = font_metrics()
    half_leading = (place.line_height - (ascent - descent) * place.size) / 2
    drawn = []
    for n, line in enumerate(lines):
        width = _width(place, line)
        spaces = sum(text.count(" ") for _variant, text in line)
        offset, word_spacing = 0.0, 0.0
        if place.align == "right":
            offset = place.width - width
        elif place.align == "center":
            offset = (place.width - width) / 2
        elif place.align == "justify" and n < len(lines) - 1 and spaces:
            word_spacing = (place.width - width) / spaces
        drawn.append(
            (
                place.kind,
                TextLine(
                    page=place.page,
                    x=(place.x + offset) * PX,
                    y=(place.page_height - place.y + shift - n * place.line_height - half_leading)
                    * PX
                    - ascent * place.size * PX,
                    size=place.size * PX,
                    color=place.color,
                    runs=tuple(line),
                    word_spacing=word_spacing * PX,
                    char_spacing=place.letter_spacing * PX,
                    strip=strip,
                ),
            )
        )
    return drawn


def kit_zip(
    reference: str,
    documents: Sequence[tuple[str, bytes, bytes | None]],
    bundle: bytes,
    *,
    dated: date,
) -> bytes:
    """The kit in one ZIP: `<reference>/01-conditions-particulieres.pdf`… for each document
    (title, PDF, DOCX or None) in its order, then `kit-complet.pdf`; every entry dated `dated`.

    The same files give the same bytes: the ZIP is not stored, it is made again from the kit's
    stored files at each download and checked against the SHA-256 recorded at issue."""
    buffer = io.BytesIO()
    when = (dated.year, dated.month, dated.day, 0, 0, 0)
    with zipfile.ZipFile(buffer, "w") as archive:  # PDF and DOCX are compressed already
        for number, (title, pdf, docx) in enumerate(documents, start=1):
            name = f"{reference}/{number:02d}-{file_stem(title)}"
            archive.writestr(zipfile.ZipInfo(f"{name}.pdf", when), pdf)
            if docx is not None:
                archive.writestr(zipfile.ZipInfo(f"{name}.docx", when), docx)
        archive.writestr(zipfile.ZipInfo(f"{reference}/kit-complet.pdf", when), bundle)
    return buffer.getvalue()
