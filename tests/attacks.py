"""Ways to tamper with a signed PDF, each as a real tool would write it (incremental updates)."""

from __future__ import annotations

import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter


def _write(writer: IncrementalPdfFileWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def add_text(data: bytes, text: bytes = b"ANNULE") -> bytes:
    """An incremental update that draws text over the first page."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    stream = generic.StreamObject(stream_data=b"q 1 0 0 RG 20 w 100 400 m 500 600 l S Q")
    writer.add_stream_to_page(0, writer.add_object(stream))
    return _write(writer)


def add_page(data: bytes) -> bytes:
    """An incremental update that appends a page."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    content = writer.add_object(
        generic.StreamObject(stream_data=b"q 0 0 1 RG 5 w 50 50 m 300 300 l S Q")
    )
    page = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject(
                [generic.NumberObject(v) for v in (0, 0, 595, 842)]
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(),
            generic.NameObject("/Contents"): content,
        }
    )
    writer.insert_page(page)
    return _write(writer)


def flip_signed_byte(data: bytes) -> bytes:
    """Alter one byte inside the signed range (the producer string of the issued revision)."""
    index = data.index(b"WeasyPrint")
    return data[:index] + b"W" + b"X" + data[index + 2 :]
