"""CSV files people open in a spreadsheet: `;`, CRLF, UTF-8 with BOM, and no cell that a
spreadsheet would run as a formula (OWASP "CSV injection"). The one place for it: the API's and
the pages' exports (`service.downloads` re-exports these) and the CDG tracking file."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

#: a cell starting with one of these is read as a formula by spreadsheets
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")


def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet runs as a formula (`=`, `+`, `-`, `@`… get a `'`)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def csv_text(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """`;`-separated, CRLF, UTF-8 BOM first (French spreadsheets), every cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in headers])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return "\ufeff" + out.getvalue()
