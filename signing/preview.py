"""Page images of an issued PDF and of a returned one, with what differs highlighted.

Meant to run inside `signing.sandbox.run_limited`: the returned file is untrusted, so it is
rendered (pdfium) in a child with a deadline and a memory cap, and only PNG bytes come back.
Reviewers then look at images made on the server: no uploaded PDF ever runs in their browser.

The comparison is visual and deliberately coarse: both pages are reduced to cells of a few
pixels (which absorbs anti-aliasing and small rendering noise), cells whose grey level differs
beyond a threshold are grouped into connected regions, and each region is drawn on the returned
page as a translucent red rectangle.
"""

from __future__ import annotations

import contextlib
import io
from collections import deque
from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from signing.errors import Refused

DPI = 100
MAX_PAGES = 60  # pages rendered per document; more are counted, not drawn
MAX_SIDE = 2400  # pixels: a page declaring a huge media box is scaled down to this
CELL = 6  # pixels per comparison cell
THRESHOLD = 28  # grey levels (0-255) of a cell's mean difference that count as a change
HIGHLIGHT_FILL = (220, 0, 0, 70)
HIGHLIGHT_OUTLINE = (200, 0, 0, 255)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PagePair:
    """One page number: the issued page, the returned page (highlighted) and their regions.

    `issued` is None for a page only the returned file has (extra), `returned` None for a
    page it lacks (missing). `boxes` are in the returned image's pixels.
    """

    number: int
    issued: bytes | None
    returned: bytes | None
    boxes: tuple[Box, ...] = ()
    changed: float = 0.0  # share of the page's cells that differ, 0 to 1

    @property
    def status(self) -> str:
        if self.returned is None:
            return "missing"
        if self.issued is None:
            return "extra"
        return "different" if self.boxes else "same"


@dataclass(frozen=True)
class Comparison:
    pages: tuple[PagePair, ...]
    issued_pages: int
    returned_pages: int
    dpi: int = DPI

    @property
    def truncated(self) -> bool:
        return max(self.issued_pages, self.returned_pages) > len(self.pages)


def render_pages(data: bytes, *, dpi: int = DPI, max_pages: int = MAX_PAGES) -> tuple[list, int]:
    """Render up to `max_pages` pages as RGB images; returns them and the document's count."""
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise Refused("malformed_pdf", "Ce PDF ne peut pas être affiché.") from exc
    try:
        with contextlib.suppress(pdfium.PdfiumError):
            pdf.init_forms()  # draws form fields (the BAI's, signature appearances)
        count = len(pdf)
        images = []
        for index in range(min(count, max_pages)):
            page = pdf[index]
            try:
                width, height = page.get_size()
                if not (width > 0 and height > 0):
                    raise Refused("malformed_pdf", "Une page de ce PDF n'a pas de dimensions.")
                scale = min(dpi / 72, MAX_SIDE / max(width, height))
                bitmap = page.render(scale=scale, may_draw_forms=True)
                images.append(bitmap.to_pil().convert("RGB"))
            finally:
                page.close()
        return images, count
    finally:
        pdf.close()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=4)
    return out.getvalue()


def _regions(mask: Image.Image) -> list[Box]:
    """Bounding boxes (in cells) of the 8-connected regions of a binary mask."""
    width, height = mask.size
    pixels = mask.tobytes()
    seen = bytearray(len(pixels))
    boxes: list[Box] = []
    for start, value in enumerate(pixels):
        if not value or seen[start]:
            continue
        seen[start] = 1
        queue = deque([start])
        x0 = x1 = start % width
        y0 = y1 = start // width
        while queue:
            index = queue.popleft()
            x, y = index % width, index // width
            x0, x1, y0, y1 = min(x0, x), max(x1, x), min(y0, y), max(y1, y)
            for dy in (-1, 0, 1):
                ny = y + dy
                if not 0 <= ny < height:
                    continue
                for dx in (-1, 0, 1):
                    nx = x + dx
                    if 0 <= nx < width:
                        other = ny * width + nx
                        if pixels[other] and not seen[other]:
                            seen[other] = 1
                            queue.append(other)
        boxes.append((x0, y0, x1 + 1, y1 + 1))
    return boxes


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Boxes that touch or nest (a stamp's frame around its text) become one."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(merged, key=lambda box: (box[1], box[0]))


def differences(issued: Image.Image, returned: Image.Image) -> tuple[list[Box], float]:
    """Regions of `returned` (its pixels) that differ from `issued`, and the changed share."""
    size = returned.size
    reference = issued if issued.size == size else issued.resize(size, Image.Resampling.BILINEAR)
    cells = (max(size[0] // CELL, 1), max(size[1] // CELL, 1))
    a = reference.convert("L").resize(cells, Image.Resampling.BOX)
    b = returned.convert("L").resize(cells, Image.Resampling.BOX)
    changed = ImageChops.difference(a, b).point(lambda v: 255 if v > THRESHOLD else 0)
    share = sum(1 for v in changed.tobytes() if v) / (cells[0] * cells[1])
    # neighbouring changes (the letters of one word, the strokes of a signature) become one box
    grouped = changed.filter(ImageFilter.MaxFilter(5))
    sx, sy = size[0] / cells[0], size[1] / cells[1]
    boxes = [
        (
            max(int(x0 * sx) - 2, 0),
            max(int(y0 * sy) - 2, 0),
            min(int(x1 * sx) + 2, size[0] - 1),
            min(int(y1 * sy) + 2, size[1] - 1),
        )
        for x0, y0, x1, y1 in _regions(grouped)
    ]
    return _merge_overlapping(boxes), share


def highlight(image: Image.Image, boxes: list[Box]) -> Image.Image:
    """`image` with each box drawn as a translucent red rectangle."""
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for box in boxes:
        draw.rectangle(box, fill=HIGHLIGHT_FILL, outline=HIGHLIGHT_OUTLINE, width=2)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


def compare_pdfs(
    issued: bytes, returned: bytes, *, dpi: int = DPI, max_pages: int = MAX_PAGES
) -> Comparison:
    """Render both documents and pair their pages; run it in `run_limited` (untrusted bytes)."""
    issued_images, issued_count = render_pages(issued, dpi=dpi, max_pages=max_pages)
    returned_images, returned_count = render_pages(returned, dpi=dpi, max_pages=max_pages)
    pages = []
    for index in range(max(len(issued_images), len(returned_images))):
        left = issued_images[index] if index < len(issued_images) else None
        right = returned_images[index] if index < len(returned_images) else None
        if left is not None and right is not None:
            boxes, share = differences(left, right)
            pages.append(
                PagePair(index + 1, png(left), png(highlight(right, boxes)), tuple(boxes), share)
            )
        else:
            pages.append(
                PagePair(
                    index + 1,
                    png(left) if left is not None else None,
                    png(right) if right is not None else None,
                )
            )
    return Comparison(tuple(pages), issued_count, returned_count, dpi)
