"""Checks on the files of a subscription request and of prerequisites, before anything is kept.

The same structure checks as signed returns: a PDF is opened by `signing.verify` inside the
sandbox (`not_a_pdf`, `malformed_pdf`, `encrypted_pdf`, `active_content`…); a spreadsheet
(XLSX) is a zip without macros (`vbaProject`), external links or encrypted parts, within a bound
on its uncompressed size; a CSV is UTF-8 text. Each refusal is an `InvalidInput` with its code
and a French message naming the file.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from service.errors import InvalidInput, PayloadTooLarge
from service.wording import after_colon
from signing.errors import Refused, VerificationBusy
from signing.sandbox import Limits, run_limited
from signing.verify import Structure, inspect_structure

#: formats each kind of file may take
PDF_ONLY = ("pdf",)
ANY_FORMAT = ("pdf", "xlsx", "csv")
#: bounds on what a spreadsheet may unpack to, and on a CSV
XLSX_MAX_UNCOMPRESSED = 50 * 1024 * 1024
XLSX_MAX_ENTRIES = 2000
XLSX_MAX_RATIO = 200
CSV_MAX_BYTES = 2 * 1024 * 1024
LIMITS = Limits(seconds=20.0, memory_mb=512)
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
FORMAT_NAMES = {"pdf": "PDF", "xlsx": "tableur XLSX", "csv": "CSV"}


@dataclass(frozen=True)
class CheckedFile:
    format: str  # "pdf", "xlsx", "csv"
    pages: int = 0  # a PDF's


def _refuse(code: str, message: str, field: str) -> InvalidInput:
    return InvalidInput(message, code=code, field=field)


def _detect(data: bytes) -> str:
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    return "csv"


def _structure(data: bytes) -> Structure:
    """In the sandboxed child: only the picklable verdict comes back."""
    return inspect_structure(data)[1]


def _check_pdf(data: bytes, field: str, label: str) -> CheckedFile:
    try:
        structure = run_limited(_structure, data, limits=LIMITS)
    except Refused as exc:
        raise _refuse(exc.code, f"{label} : {after_colon(exc.message)}", field) from None
    except VerificationBusy:
        raise
    return CheckedFile("pdf", structure.pages)


def _check_xlsx(data: bytes, field: str, label: str) -> CheckedFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _refuse(
            "malformed_spreadsheet", f"{label} : ce tableur est endommagé ou illisible.", field
        ) from None
    if len(entries) > XLSX_MAX_ENTRIES:
        raise _refuse(
            "malformed_spreadsheet", f"{label} : ce tableur contient trop d'éléments.", field
        )
    names = {entry.filename.lower() for entry in entries}
    if "[content_types].xml" not in names or "xl/workbook.xml" not in names:
        raise _refuse(
            "unsupported_format",
            f"{label} : ce fichier n'est pas un tableur XLSX (classeur Excel ou LibreOffice).",
            field,
        )
    total = 0
    for entry in entries:
        name = entry.filename.lower()
        if entry.flag_bits & 0x1:
            raise _refuse(
                "encrypted_spreadsheet",
                f"{label} : ce tableur est chiffré ou protégé : envoyez une version non protégée.",
                field,
            )
        if "vbaproject" in name:
            raise _refuse(
                "active_content",
                f"{label} : ce tableur contient des macros : il est refusé par sécurité "
                "(enregistrez-le au format .xlsx sans macros).",
                field,
            )
        if name.startswith("xl/externallinks/"):
            raise _refuse(
                "external_links",
                f"{label} : ce tableur contient des liens vers d'autres fichiers : "
                "supprimez-les (copier, collage des valeurs) et recommencez.",
                field,
            )
        total += entry.file_size
        if total > XLSX_MAX_UNCOMPRESSED or (
            entry.compress_size and entry.file_size / entry.compress_size > XLSX_MAX_RATIO
        ):
            raise _refuse(
                "too_large",
                f"{label} : ce tableur décompressé est d'une taille déraisonnable.",
                field,
            )
    try:
        types = archive.read("[Content_Types].xml")
    except (KeyError, zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _refuse(
            "malformed_spreadsheet", f"{label} : ce tableur est endommagé ou illisible.", field
        ) from None
    if b"macroEnabled" in types or b"vbaProject" in types:
        raise _refuse(
            "active_content",
            f"{label} : ce tableur contient des macros : il est refusé par sécurité.",
            field,
        )
    return CheckedFile("xlsx")


def _check_csv(data: bytes, field: str, label: str) -> CheckedFile:
    if len(data) > CSV_MAX_BYTES:
        raise PayloadTooLarge(
            f"{label} : fichier CSV trop volumineux ({CSV_MAX_BYTES // (1024 * 1024)} Mo au plus).",
            code="too_large",
            field=field,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refuse(
            "unsupported_format",
            f"{label} : ce fichier n'est ni un PDF, ni un tableur XLSX, ni un texte CSV en UTF-8.",
            field,
        ) from None
    if "\x00" in text or not text.strip():
        raise _refuse(
            "unsupported_format", f"{label} : ce fichier CSV est vide ou n'est pas du texte.", field
        )
    return CheckedFile("csv")


def check_file(
    data: bytes, *, field: str, label: str, formats: tuple[str, ...], max_bytes: int
) -> CheckedFile:
    """Refuse what cannot be kept (with its code), else the file's format."""
    if not data:
        raise _refuse("empty_file", f"{label} : le fichier envoyé est vide.", field)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{label} : fichier trop volumineux ({max_bytes // (1024 * 1024)} Mo au plus).",
            field=field,
        )
    detected = _detect(data)
    if detected not in formats:
        allowed = ", ".join(FORMAT_NAMES[f] for f in formats)
        code = "not_a_pdf" if formats == PDF_ONLY else "unsupported_format"
        raise _refuse(code, f"{label} : format non accepté (attendu : {allowed}).", field)
    if detected == "pdf":
        return _check_pdf(data, field, label)
    if detected == "xlsx":
        return _check_xlsx(data, field, label)
    return _check_csv(data, field, label)
