"""Reading memberships from files: the import (CSV or XLSX, one membership a row, columns named
after the JSON fields) with its template, and the kit's BAI filled in (its PDF form fields).

Each reader returns `(line, fields)` pairs in the JSON shape of `MembershipIn`; the rules are
applied by `agents.domain`. A file that cannot be read at all is refused whole (`InvalidInput`);
what a row holds is judged row by row.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, datetime
from typing import Any

import pikepdf
from openpyxl import Workbook, load_workbook

from service.agents.models import BASE_COMPONENTS
from service.agents.schemas import BOOLEAN_FIELDS, IMPORT_COLUMNS
from service.csvfile import csv_text
from service.errors import InvalidInput
from service.reference.models import Convention

#: at most this many agents in one file (more: split it)
MAX_ROWS = 5000
#: an XLSX whose parts unpack to more than this is refused (a "zip bomb")
MAX_XLSX_UNPACKED = 50 * 1024 * 1024
#: parts of an XLSX that carry code or links to elsewhere: refused
_ACTIVE_PARTS = re.compile(
    r"(vbaProject\.bin|/activeX/|/externalLinks/|/embeddings/|\.bin$|/macrosheets/)", re.I
)
_TRUE = {"oui", "o", "vrai", "true", "1", "x"}
_FALSE = {"non", "n", "faux", "false", "0", ""}

EXAMPLE_ROW: dict[str, str] = {
    "last_name": "Durand",
    "first_name": "Élise",
    "birth_date": "1985-04-12",
    "email": "elise.durand@example.fr",
    "status": "titulaire",
    "category": "B",
    "paid_by_hour_or_day": "non",
    "in_normal_service": "oui",
    "on_sick_leave": "non",
    "returned_on": "",
    "previous_collective_contract": "non",
    "has_individual_contract": "non",
    "tbi": "1500,00",
    "nbi": "0",
    "ri": "0",
    "cti": "0",
    "options": "",
    "joins_on": "2025-02-01",
}


def _refuse(message: str, code: str = "unreadable_file") -> InvalidInput:
    return InvalidInput(message, code=code, field="file")


# -- one row to the JSON shape ------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _date(text: str) -> str | None:
    """`2025-02-01` or `01/02/2025` (what a French spreadsheet shows) → ISO; else as typed."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if match:
        return f"{match.group(3)}-{int(match.group(2)):02d}-{int(match.group(1)):02d}"
    return text


def row_fields(cells: dict[str, Any]) -> dict[str, Any]:
    """A row (column → cell) as `MembershipIn`'s JSON: booleans `oui`/`non`, the base's columns
    grouped, options separated by commas, dates ISO or `JJ/MM/AAAA`."""
    text = {k: _text(v) for k, v in cells.items()}
    fields: dict[str, Any] = {}
    for name in ("last_name", "first_name", "email", "status", "category"):
        fields[name] = text.get(name, "")
    for name in ("birth_date", "joins_on", "returned_on"):
        value = _date(text.get(name, ""))
        if value is not None or name != "returned_on":
            fields[name] = value
    for name in BOOLEAN_FIELDS:
        raw = text.get(name, "").lower()
        fields[name] = True if raw in _TRUE else False if raw in _FALSE else raw
    fields["base"] = {k: text.get(k) or "0" for k in BASE_COMPONENTS}
    fields["options"] = [o.strip() for o in text.get("options", "").split(",") if o.strip()]
    return fields


def _header(names: list[str]) -> list[str]:
    header = [n.strip().lstrip("\ufeff").lower() for n in names]
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    unknown = [c for c in header if c and c not in IMPORT_COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("colonnes manquantes : " + ", ".join(missing))
        if unknown:
            parts.append("colonnes inconnues : " + ", ".join(unknown))
        raise _refuse(
            "Le fichier n'a pas les colonnes du modèle (" + " ; ".join(parts) + ").",
            code="import_columns",
        )
    return header


def _rows(header: list[str], lines: Any) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, values in lines:
        if all(_text(v) == "" for v in values):
            continue  # blank lines are no agents
        if len(rows) >= MAX_ROWS:
            raise _refuse(
                f"Le fichier compte plus de {MAX_ROWS} agents : découpez-le.",
                code="import_too_large",
            )
        cells = {name: values[i] if i < len(values) else None for i, name in enumerate(header)}
        rows.append((number, row_fields(cells)))
    return rows


# -- CSV and XLSX ----------------------------------------------------------------------------


def read_csv(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(
            "Le fichier CSV doit être enregistré en UTF-8.", code="import_encoding"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        first = next(reader, None)
        if first is None:
            raise _refuse("Le fichier est vide.", code="import_empty")
        header = _header(first)
        return _rows(header, ((reader.line_num, row) for row in reader))
    except csv.Error as exc:
        raise _refuse(f"CSV illisible (ligne {reader.line_num}).") from exc


def _check_xlsx(data: bytes) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise _refuse("Classeur XLSX illisible.") from exc
    if sum(i.file_size for i in infos) > MAX_XLSX_UNPACKED:
        raise _refuse("Classeur trop volumineux une fois décompressé.", code="import_too_large")
    names = [i.filename for i in infos]
    if "[Content_Types].xml" not in names:
        raise _refuse("Classeur XLSX illisible.")
    content_types = archive.read("[Content_Types].xml").decode("utf-8", "replace")
    if any(_ACTIVE_PARTS.search(n) for n in names) or "macroEnabled" in content_types:
        raise _refuse(
            "Le classeur contient des macros ou du contenu actif : enregistrez-le au format "
            "« Classeur Excel (.xlsx) » sans macros.",
            code="import_active_content",
        )


def read_xlsx(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    _check_xlsx(data)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise _refuse("Classeur XLSX illisible.") from exc
    try:
        sheet = workbook.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        first = next(lines, None)
        if first is None:
            raise _refuse("Le classeur est vide.", code="import_empty")
        header = _header([_text(v) for v in first])
        return _rows(header, ((n, list(v)) for n, v in enumerate(lines, start=2)))
    finally:
        workbook.close()


def read_import(data: bytes, filename: str = "") -> list[tuple[int, dict[str, Any]]]:
    """A CSV (`;`, UTF-8, BOM tolerated) or an XLSX, told apart by their content."""
    if not data.strip(b"\xef\xbb\xbf \r\n\t"):
        raise _refuse("Le fichier est vide.", code="import_empty")
    if data.startswith(b"PK\x03\x04"):
        return read_xlsx(data)
    if data.startswith((b"\xd0\xcf\x11\xe0", b"%PDF")) or filename.lower().endswith(".xls"):
        raise _refuse(
            "Format non pris en charge : déposez un fichier CSV (séparateur « ; ») ou XLSX.",
            code="import_format",
        )
    return read_csv(data)


def template_csv() -> str:
    return csv_text(IMPORT_COLUMNS, [[EXAMPLE_ROW[c] for c in IMPORT_COLUMNS]])


def template_xlsx() -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Agents"
    sheet.append(list(IMPORT_COLUMNS))
    sheet.append([EXAMPLE_ROW[c] for c in IMPORT_COLUMNS])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# -- the kit's BAI filled in ----------------------------------------------------------------


def _field_value(field: Any) -> str:
    value = field.get("/V")
    if value is None:
        return ""
    if isinstance(value, pikepdf.Name):
        return str(value)[1:]
    return str(value).strip()


#: the most form fields walked in one PDF (the BAI has a few dozen)
MAX_FORM_NODES = 2000


def _array(value: Any) -> list[Any]:
    return list(value) if isinstance(value, pikepdf.Array) else []


def _form_values(pdf: pikepdf.Pdf) -> dict[str, str]:
    """The `bai_` fields' values, walking /Fields and /Kids: each indirect object once (a
    crafted /Kids may point back to its parent), non-dictionaries skipped, at most
    `MAX_FORM_NODES` nodes (else the file is refused)."""
    form = pdf.Root.get("/AcroForm")
    values: dict[str, str] = {}
    if not isinstance(form, pikepdf.Dictionary):
        return values
    stack = _array(form.get("/Fields"))
    seen: set[tuple[int, int]] = set()
    walked = 0
    while stack:
        node = stack.pop()
        if not isinstance(node, pikepdf.Dictionary):
            continue
        if node.is_indirect:
            if node.objgen in seen:
                continue
            seen.add(node.objgen)
        walked += 1
        if walked > MAX_FORM_NODES:
            raise _refuse("Ce PDF a trop de champs de formulaire pour un bulletin d'adhésion.")
        name = str(node.get("/T", ""))
        if name.startswith("bai_"):
            values[name] = _field_value(node)
        stack.extend(_array(node.get("/Kids")))
    return values


def read_enrolment_form(
    data: bytes, *, convention: Convention, extra: dict[str, str]
) -> dict[str, Any]:
    """The BAI's form fields as `MembershipIn`'s JSON. The form's declaration (normal service,
    not paid by the hour, not on sick leave) is what the agent signed; the start of cover and
    an individual contract come with the upload (`extra`)."""
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except (pikepdf.PdfError, ValueError) as exc:
        raise _refuse("Ce fichier n'est pas un PDF lisible.") from exc
    with pdf:
        try:
            values = _form_values(pdf)
        except (pikepdf.PdfError, ValueError, TypeError, RecursionError) as exc:
            raise _refuse("Ce fichier n'est pas un PDF lisible.") from exc
    if not any(name.startswith("bai_") for name in values):
        raise _refuse(
            "Ce PDF n'est pas le bulletin d'adhésion du kit (ses champs sont introuvables).",
            code="not_an_enrolment_form",
        )
    checked = {k for k, v in values.items() if v and v != "Off"}
    options = [o["code"] for o in convention.options if f"bai_option_{o['code']}" in checked]
    last_name = values.get("bai_nom", "")
    return row_fields(
        {
            "last_name": last_name,
            "first_name": values.get("bai_prenom", ""),
            "birth_date": values.get("bai_naissance", ""),
            "email": values.get("bai_courriel", ""),
            "status": values.get("bai_statut", "").lower(),
            "category": values.get("bai_categorie", "").upper(),
            "paid_by_hour_or_day": "non",
            "in_normal_service": "oui",
            "on_sick_leave": "non",
            "returned_on": extra.get("returned_on", ""),
            "previous_collective_contract": extra.get("previous_collective_contract", "non"),
            "has_individual_contract": extra.get("has_individual_contract", "non"),
            "tbi": values.get("bai_remuneration", "").replace("€", "").strip(),
            "options": ",".join(options),
            "joins_on": extra.get("joins_on", ""),
        }
    )
