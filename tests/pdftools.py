"""Reading generated PDFs back: text, footers, words' boxes (poppler), fonts, PDF/A metadata."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader


def pdf_text(data: bytes) -> list[str]:
    """Text of every page, with whitespace (incl. non-breaking) folded to single spaces."""
    reader = PdfReader(io.BytesIO(data))
    return [fold(page.extract_text() or "") for page in reader.pages]


def fold(text: str) -> str:
    text = re.sub(r"-\s*\n\s*", "-", text)  # a line broken after a hyphen
    return re.sub(r"[\s\u00a0\u202f]+", " ", text).strip()


@dataclass(frozen=True)
class Word:
    page: int
    text: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    page_width: float
    page_height: float


def words(data: bytes) -> list[Word]:
    """Every word with its box, from poppler's `pdftotext -bbox`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.pdf"
        path.write_bytes(data)
        html = subprocess.run(
            ["pdftotext", "-bbox", str(path), "-"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    out: list[Word] = []
    pages = re.split(r"<page ", html)[1:]
    for number, chunk in enumerate(pages):
        size = re.match(r'width="([\d.]+)" height="([\d.]+)"', chunk)
        assert size is not None
        width, height = float(size.group(1)), float(size.group(2))
        for m in re.finditer(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
            chunk,
        ):
            out.append(
                Word(number, m.group(5), *(float(m.group(i)) for i in range(1, 5)), width, height)
            )
    return out


def fonts_embedded(data: bytes) -> list[str]:
    """Names of fonts that are NOT embedded (empty when all are)."""
    reader = PdfReader(io.BytesIO(data))
    missing = []
    for page in reader.pages:
        fonts = page.get("/Resources", {}).get_object().get("/Font", {})
        for font in fonts.get_object().values():
            font = font.get_object()
            descendants = font.get("/DescendantFonts")
            targets = [d.get_object() for d in descendants] if descendants else [font]
            for target in targets:
                descriptor = target.get("/FontDescriptor")
                descriptor = descriptor.get_object() if descriptor else {}
                if not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                    missing.append(str(target.get("/BaseFont")))
    return missing


def xmp(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()


def every_font_embedded(data: bytes) -> list[str]:
    """Fonts reachable anywhere from the catalog (pages, annotations' appearances) that are not
    embedded."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    reader = PdfReader(io.BytesIO(data))
    missing: list[str] = []
    seen: set[int] = set()
    stack: list[object] = [reader.trailer["/Root"]]
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            if item.idnum in seen:
                continue
            seen.add(item.idnum)
            item = item.get_object()
        if isinstance(item, DictionaryObject):
            if item.get("/Type") == "/Font" and item.get("/Subtype") not in ("/Type0", "/Type3"):
                descriptor = item.get("/FontDescriptor")
                descriptor = descriptor.get_object() if descriptor else {}
                if not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                    missing.append(str(item.get("/BaseFont")))
            stack.extend(v for k, v in item.items() if k not in ("/Parent", "/P"))
        elif isinstance(item, ArrayObject):
            stack.extend(item)
    return missing
