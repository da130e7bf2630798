"""Page images for the review of a return: the issued piece beside the returned one.

The returned file is untrusted: it is rendered by `signing.preview` inside the sandbox
(`run_limited`), once per return; the PNG pages and a small manifest are then kept in the
document store under `previews/…`, so the review page and its images read them back.

Rendering happens in the web request that first needs it, so it is bounded: the first
`REQUEST_PAGES` pages of each side, one renderer per return at a time (a short-lived marker in
the rate limiter's store, shared by every process when Redis is configured). Whoever finds the
marker taken, or a machine too busy to finish in time, gets `PreviewPending` ("come back in a
few seconds"), never a verdict on the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInput, NotFound, Unavailable
from service.kits.domain import get_document
from service.ratelimit import limiter
from service.returns.models import KitReturn
from signing.errors import Refused, VerificationBusy
from signing.preview import Comparison, compare_pdfs, png, render_pages
from signing.sandbox import Limits, run_limited
from storage import ObjectNotFound, ObjectStore, sha256_hex

LIMITS = Limits(seconds=30.0, memory_mb=1024)
FORMAT = "v1"  # bump when the rendering changes: older cached previews are then ignored
SIDES = {"emis": "issued", "retour": "returned"}  # URL word (French) -> manifest field
REQUEST_PAGES = 20  # pages rendered per side in a web request; the rest is counted, not drawn
#: how long a renderer's marker lives if it never releases it (the sandbox's limit, and some)
CLAIM_SECONDS = int(max(LIMITS.seconds, LIMITS.wall_seconds)) + 30


class PreviewPending(Unavailable):
    """The preview is being made (by another request) or the machine was too busy: retry."""

    code = "preview_pending"
    message = "Aperçu en préparation, rechargez dans quelques instants."
    retry_after = 5


@dataclass(frozen=True)
class PageView:
    number: int
    status: str  # same, different, missing (from the return), extra (not in the issued piece)
    issued: str | None  # SHA-256 of the PNG, None when the side has no such page
    returned: str | None
    regions: int = 0
    changed: float = 0.0


@dataclass(frozen=True)
class ReviewPreview:
    pages: tuple[PageView, ...] = ()
    issued_pages: int = 0
    returned_pages: int = 0
    dpi: int = 0
    problem: str | None = None  # French, when no image could be made

    @property
    def truncated(self) -> bool:
        return max(self.issued_pages, self.returned_pages) > len(self.pages)

    @property
    def differing(self) -> int:
        return sum(1 for page in self.pages if page.status != "same")


def _prefix(ret: KitReturn) -> str:
    return f"previews/{ret.kit.reference}/{ret.kind}/{ret.id}-{ret.sha256[:16]}-{FORMAT}"


def _image_key(ret: KitReturn, number: int, side: str) -> str:
    return f"{_prefix(ret)}/{number:03d}-{side}.png"


def _from_manifest(data: dict[str, Any]) -> ReviewPreview:
    return ReviewPreview(
        pages=tuple(PageView(**page) for page in data["pages"]),
        issued_pages=data["issued_pages"],
        returned_pages=data["returned_pages"],
        dpi=data["dpi"],
    )


def _store_comparison(ret: KitReturn, comparison: Comparison, store: ObjectStore) -> ReviewPreview:
    pages = []
    for pair in comparison.pages:
        digests: dict[str, str | None] = {}
        for side in ("issued", "returned"):
            image = getattr(pair, side)
            digests[side] = None
            if image is not None:
                digest = sha256_hex(image)
                store.put(
                    _image_key(ret, pair.number, side),
                    image,
                    sha256=digest,
                    content_type="image/png",
                )
                digests[side] = digest
        pages.append(
            PageView(
                number=pair.number,
                status=pair.status,
                issued=digests["issued"],
                returned=digests["returned"],
                regions=len(pair.boxes),
                changed=round(pair.changed, 4),
            )
        )
    preview = ReviewPreview(
        pages=tuple(pages),
        issued_pages=comparison.issued_pages,
        returned_pages=comparison.returned_pages,
        dpi=comparison.dpi,
    )
    manifest = json.dumps(
        {
            "pages": [page.__dict__ for page in pages],
            "issued_pages": preview.issued_pages,
            "returned_pages": preview.returned_pages,
            "dpi": preview.dpi,
        }
    ).encode()
    # written last: a manifest is only ever there with all its images
    store.put(f"{_prefix(ret)}/manifest.json", manifest, content_type="application/json")
    return preview


def claim_name(ret: KitReturn) -> str:
    """The marker that one request holds while it makes the preview of `ret`."""
    return f"review-preview/{ret.id}-{ret.sha256[:16]}-{FORMAT}"


def _cached(ret: KitReturn, store: ObjectStore) -> ReviewPreview | None:
    try:
        return _from_manifest(json.loads(store.get(f"{_prefix(ret)}/manifest.json")))
    except ObjectNotFound:
        return None


def review_preview(
    ret: KitReturn, *, store: ObjectStore, limits: Limits | None = None
) -> ReviewPreview:
    """The page images of a return and of its issued piece, made (in the sandbox) on first use.

    Raises `PreviewPending` while another request makes them, or when the machine was too busy
    to make them in time.
    """
    if ret.quarantined:
        return ReviewPreview(
            problem="Cette pièce a été refusée à la vérification : elle n'est pas affichée."
        )
    cached = _cached(ret, store)
    if cached is not None:
        return cached
    claim = claim_name(ret)
    if not limiter().claim(claim, CLAIM_SECONDS):
        raise PreviewPending()
    try:
        cached = _cached(ret, store)  # made between our reading and our claim
        if cached is not None:
            return cached
        issued = store.get(get_document(ret.kit, ret.kind).pdf_key)
        try:
            comparison = run_limited(
                compare_pdfs,
                issued,
                store.get(ret.storage_key),
                max_pages=REQUEST_PAGES,
                limits=limits or LIMITS,
            )
        except VerificationBusy as exc:  # the wall clock ran out: nothing said about the file
            raise PreviewPending() from exc
        except Refused as exc:  # not cached: a deadline missed on a busy machine may pass later
            return ReviewPreview(problem=f"Aperçu impossible : {exc.message}")
        return _store_comparison(ret, comparison, store)
    finally:
        limiter().release(claim)


def page_image(ret: KitReturn, *, number: int, side: str, store: ObjectStore) -> tuple[bytes, str]:
    """One PNG of the review (`side`: `emis` or `retour`) and its SHA-256.

    Read from the document store; only when the preview was never made (or was dropped) is it
    made, once, as `review_preview` does (`PreviewPending` meanwhile).
    """
    field = SIDES.get(side)
    if field is None or number < 1 or ret.quarantined:
        raise NotFound("Image de page introuvable.", code="unknown_page")
    try:
        data = store.get(_image_key(ret, number, field))
    except ObjectNotFound:
        preview = review_preview(ret, store=store)
        page = next((p for p in preview.pages if p.number == number), None)
        if page is None or getattr(page, field) is None:
            raise NotFound("Image de page introuvable.", code="unknown_page") from None
        data = store.get(_image_key(ret, number, field))
    return data, sha256_hex(data)


#: how long a request for a page image waits for another request drawing the same PDF
PAGE_WAIT_SECONDS = 20.0


def stored_pdf_page(
    *,
    store: ObjectStore,
    pdf_key: str,
    prefix: str,
    number: int,
    max_pages: int,
    dpi: int | None = None,
    limits: Limits | None = None,
    wait_seconds: float = PAGE_WAIT_SECONDS,
) -> bytes:
    """Page `number` of the PDF stored at `pdf_key`, as PNG, for a page that shows a stored
    PDF as images (the file itself never opened in the browser).

    Read from `prefix/NNN.png` when drawn before; otherwise the first `max_pages` pages are
    drawn once, in the sandbox, by one request at a time (the others wait up to
    `wait_seconds` for its images, a page's images being asked for together, then get
    `PreviewPending`), and kept under `prefix`. 404 `unknown_page` beyond the document or
    `max_pages`."""
    if not 1 <= number <= max_pages:
        raise NotFound("Image de page introuvable.", code="unknown_page")
    key = f"{prefix}/{number:03d}.png"
    try:
        return store.get(key)
    except ObjectNotFound:
        pass
    claim = f"pdf-pages/{prefix}"
    deadline = time.monotonic() + wait_seconds
    while not limiter().claim(claim, CLAIM_SECONDS):
        if time.monotonic() >= deadline:
            raise PreviewPending()
        time.sleep(0.2)
        try:
            return store.get(key)  # the other request has drawn it meanwhile
        except ObjectNotFound:
            pass
    try:
        try:
            return store.get(key)  # drawn between our reading and our claim
        except ObjectNotFound:
            pass
        options: dict[str, Any] = {"max_pages": max_pages}
        if dpi is not None:
            options["dpi"] = dpi
        try:
            images, _ = run_limited(
                render_pages, store.get(pdf_key), limits=limits or LIMITS, **options
            )
        except VerificationBusy as exc:
            raise PreviewPending() from exc
        except Refused as exc:
            raise InvalidInput(exc.message, code=exc.code) from None
        blobs = [png(image) for image in images]
        for index, blob in enumerate(blobs, start=1):
            store.put(f"{prefix}/{index:03d}.png", blob, content_type="image/png")
    finally:
        limiter().release(claim)
    if number > len(blobs):
        raise NotFound("Image de page introuvable.", code="unknown_page")
    return blobs[number - 1]
