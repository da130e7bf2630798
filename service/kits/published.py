"""The CDG's published documents (issue 12): what a collectivité reads before it joins.

A pure function of (CDG, convention, template set, day of publication), like the kit: the
subscription request (DSC, a fillable PDF/A-2b form with a signature field), the blank BAI, the
notice, the list of pay elements to insure (XLSX and CSV) and three DOCX models (CST referral,
deliberation, termination letter). Nothing names an employer, so one rendering serves every
collectivité of the convention; `fingerprint` says when it must be rendered again.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation
from weasyprint import HTML

from service import formatting, labels
from service.csvfile import csv_text
from service.kits.clauses import DocxMeta, to_docx
from service.kits.pdfforms import Piece, SignatureField, finish_kit
from service.kits.render import (
    CREATOR,
    CdgData,
    ConventionData,
    _group_labels,
    _insurer_identity,
    notice_example,
    template_set,
)
from service.reference.templates import TEMPLATES_ROOT

#: (kind, format, French title), in the order of the process
PUBLISHED: tuple[tuple[str, str, str], ...] = (
    ("subscription-request", "pdf", "Demande de souscription de la collectivité (DSC)"),
    ("enrolment-form", "pdf", "Bulletin d'adhésion individuelle (vierge)"),
    ("premium-elements-list", "xlsx", "Liste des éléments de rémunération à assurer"),
    ("premium-elements-csv", "csv", "Liste des éléments de rémunération à assurer (CSV)"),
    ("information-notice", "pdf", "Notice d'information"),
    ("cst-referral-model", "docx", "Modèle de saisine du comité social territorial"),
    ("deliberation-model", "docx", "Modèle de délibération"),
    ("termination-model", "docx", "Modèle de lettre de résiliation"),
)
PUBLISHED_KINDS = tuple(kind for kind, _, _ in PUBLISHED)
TITLES = {kind: title for kind, _, title in PUBLISHED}
FORMATS = {kind: fmt for kind, fmt, _ in PUBLISHED}
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
_PDF_KINDS = ("subscription-request", "enrolment-form", "information-notice")
_DOCX_KINDS = ("cst-referral-model", "deliberation-model", "termination-model")
#: the DSC's signature field: (layout anchor, field name, French label)
DSC_SIGNATURE = (
    "sig-employer-subscription-request",
    "SignatureCollectivite",
    "Signature de la collectivité",
)
#: the pay elements of the list (DESIGN.md: the premium base), each with whether it is insured
PAY_ELEMENTS: tuple[tuple[str, bool], ...] = (
    ("Traitement brut indiciaire (y compris l'indemnité compensatrice de la CSG)", True),
    ("Nouvelle bonification indiciaire (NBI)", True),
    ("Régime indemnitaire : indemnité de fonctions, de sujétions et d'expertise (IFSE)", True),
    ("Autre élément du régime indemnitaire versé chaque mois (à préciser)", True),
    ("Complément de traitement indiciaire (CTI)", True),
    ("Indemnité de résidence", False),
    ("Supplément familial de traitement (SFT)", False),
    ("Complément indemnitaire annuel (CIA) et autres primes variables", False),
    ("Heures supplémentaires, astreintes et autres éléments variables", False),
)
LIST_COLUMNS = (
    "Élément de rémunération",
    "Compris dans l'assiette de cotisation",
    "Libellé dans la paie de la collectivité",
    "Code rubrique de paie",
    "Versé par la collectivité (oui/non)",
    "Montant mensuel brut moyen (€)",
    "Observations",
)


@dataclass(frozen=True)
class PublishedInput:
    cdg: CdgData
    convention: ConventionData
    #: the day the documents say they were published (the day of rendering)
    published_on: date
    timezone: str = "Europe/Paris"


@dataclass(frozen=True)
class PublishedFile:
    kind: str
    title: str
    format: str
    content: bytes = b""

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


#: template set -> (its files' names, sizes and mtimes, the SHA-256 of their contents): the
#: files are read again only when one of them changes (once per process otherwise)
_TEMPLATE_DIGESTS: dict[str, tuple[tuple[tuple[str, int, int], ...], str]] = {}


def template_set_digest(name: str) -> str:
    """SHA-256 of every file of the template set (names and contents), cached per process and
    recomputed when a file is added, removed, resized or touched."""
    paths = sorted(
        p
        for folder in (TEMPLATES_ROOT / "html" / name, TEMPLATES_ROOT / "docx" / name)
        for p in folder.rglob("*")
        if p.is_file()
    )
    stats = []
    for path in paths:
        st = path.stat()
        stats.append((str(path.relative_to(TEMPLATES_ROOT)), st.st_size, st.st_mtime_ns))
    signature = tuple(stats)
    cached = _TEMPLATE_DIGESTS.get(name)
    if cached is not None and cached[0] == signature:
        return cached[1]
    digest = hashlib.sha256()
    for path, (relative, _, _) in zip(paths, signature, strict=True):
        digest.update(relative.encode())
        digest.update(path.read_bytes())
    _TEMPLATE_DIGESTS[name] = (signature, digest.hexdigest())
    return _TEMPLATE_DIGESTS[name][1]


def fingerprint(data: PublishedInput) -> str:
    """SHA-256 of what the documents depend on: the CDG's and the convention's data and every
    file of the template set (not the day of publication: a new day is no new version)."""
    digest = hashlib.sha256()
    digest.update(repr((data.cdg, data.convention)).encode())
    digest.update(template_set_digest(data.convention.template_set).encode())
    return digest.hexdigest()


def _context(data: PublishedInput) -> dict[str, Any]:
    convention = data.convention
    return {
        "cdg": data.cdg,
        "convention": convention,
        "regime": labels.regime_wording(convention.regime),
        "published_on": data.published_on,
        "duration_years": convention.ends_on.year - convention.starts_on.year + 1,
        "insurer_identity": _insurer_identity(convention),
        "example": notice_example(convention.base_rate),
    }


def _pdf(data: PublishedInput, kind: str, context: dict[str, Any]) -> bytes:
    templates = template_set(data.convention.template_set)
    spec = PublishedFile(kind, TITLES[kind], "pdf")
    html = templates.env.get_template("published/document.html").render(**context, spec=spec)
    document = HTML(string=html, base_url=str(templates.html_dir) + "/").render(
        stylesheets=[templates.stylesheet], font_config=templates.fonts
    )
    written = document.write_pdf(
        pdf_variant="pdf/a-2b", pdf_forms=True, pdf_tags=True, uncompressed_pdf=True
    )
    fields = []
    anchor, name, label = DSC_SIGNATURE
    for number, page in enumerate(document.pages):
        box = page.anchors.get(anchor)
        if box is not None:
            px = 0.75  # CSS pixel → PDF point
            x1, _y1, x2, y2 = box
            bottom = (page.height - y2) * px
            rect = (x1 * px + 6, bottom + 6, x2 * px - 6, bottom + 66)
            fields.append(SignatureField(name, label, number, rect))
    title = f"{spec.title} – {data.convention.reference}"
    _bundle, pdfs = finish_kit(
        written,
        pieces=[Piece(title, 0, len(document.pages), tuple(fields), spec.title)],
        created=datetime.combine(data.published_on, time.min, tzinfo=ZoneInfo(data.timezone)),
        creator=CREATOR,
        group_labels=_group_labels(document),
    )
    return pdfs[0]


def _docx(data: PublishedInput, kind: str, context: dict[str, Any]) -> bytes:
    templates = template_set(data.convention.template_set)
    html = templates.env.get_template(f"published/models/{kind}.html").render(**context)
    meta = DocxMeta(
        title=TITLES[kind],
        author=data.convention.manager,
        subject=f"Convention de participation {data.convention.reference} – {data.cdg.name}",
        issued_on=data.published_on,
        footer=f"{TITLES[kind]} · convention {data.convention.reference} · {data.cdg.name}",
    )
    return to_docx(templates.docx_base, html, meta)


def _list_rows(data: PublishedInput) -> list[list[str]]:
    return [
        [label, "oui" if included else "non", "", "", "", "", ""]
        for label, included in PAY_ELEMENTS
    ]


def _xlsx(data: PublishedInput) -> bytes:
    convention = data.convention
    book = Workbook()
    sheet = book.active
    sheet.title = "Éléments à assurer"
    bold = Font(bold=True)
    sheet["A1"] = TITLES["premium-elements-list"]
    sheet["A1"].font = Font(bold=True, size=13)
    sheet["A2"] = (
        f"Convention de participation {convention.reference} – {data.cdg.name} – "
        f"{convention.insurer} (gestionnaire : {convention.manager}) – "
        f"{labels.regime(convention.regime)}"
    )
    sheet["A3"] = (
        f"Taux socle : {formatting.percent(convention.base_rate)} de l'assiette mensuelle. "
        "Complétez une ligne par élément versé par la collectivité (colonnes C à G) et joignez "
        "la liste à la demande de souscription."
    )
    sheet["A4"] = "Collectivité :"
    sheet["A4"].font = bold
    sheet["A5"] = "SIRET :"
    sheet["A5"].font = bold
    header = 7
    fill = PatternFill("solid", fgColor="E8EEF4")
    for column, title in enumerate(LIST_COLUMNS, start=1):
        cell = sheet.cell(row=header, column=column, value=title)
        cell.font = bold
        cell.fill = fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    yes_no = DataValidation(type="list", formula1='"oui,non"', allow_blank=True)
    sheet.add_data_validation(yes_no)
    for offset, row in enumerate(_list_rows(data), start=header + 1):
        for column, value in enumerate(row, start=1):
            sheet.cell(row=offset, column=column, value=value)
        yes_no.add(f"E{offset}")
        sheet.cell(row=offset, column=6).number_format = "#,##0.00"
    for letter, width in zip("ABCDEFG", (62, 16, 34, 18, 18, 20, 30), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = f"A{header + 1}"
    book.properties.title = TITLES["premium-elements-list"]
    book.properties.creator = convention.manager
    book.properties.language = "fr-FR"
    moment = datetime.combine(data.published_on, time.min)
    book.properties.created = book.properties.modified = moment
    buffer = io.BytesIO()
    book.save(buffer)
    return _stable_zip(buffer.getvalue(), data.published_on)


def _stable_zip(data: bytes, day: date) -> bytes:
    """The same XLSX bytes for the same input: every entry dated the day of publication."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, (day.year, day.month, day.day, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


def _csv(data: PublishedInput) -> bytes:
    return csv_text(LIST_COLUMNS, _list_rows(data)).encode("utf-8")


def render_published(data: PublishedInput) -> tuple[PublishedFile, ...]:
    """Every published document of the convention, in `PUBLISHED` order."""
    context = _context(data)
    files = []
    for kind, fmt, title in PUBLISHED:
        if kind in _PDF_KINDS:
            content = _pdf(data, kind, context)
        elif kind in _DOCX_KINDS:
            content = _docx(data, kind, context)
        elif fmt == "xlsx":
            content = _xlsx(data)
        else:
            content = _csv(data)
        files.append(PublishedFile(kind, title, fmt, content))
    return tuple(files)
