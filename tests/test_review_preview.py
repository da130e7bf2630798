"""The review page shows both documents as server-rendered images, differences highlighted."""

from __future__ import annotations

import io
import re
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from service import labels
from service.backends import document_store
from service.errors import NotFound
from service.extensions import db
from service.formatting import long_date
from service.ratelimit import limiter
from service.returns.preview import PreviewPending, stored_pdf_page
from signing.preview import compare_pdfs
from signing.sandbox import Limits, run_limited
from tests.conftest import CORPUS
from tests.pki import Pki, sign_pdf
from tests.test_pages import sign_in
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload

ONE_PAGE = """<html><body style="font: 14pt serif; margin: 2cm">
<h1>Conditions particulières</h1><p>Participation mensuelle : 15,00 €.</p></body></html>"""


def _pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()


def _stamped(data: bytes, *, page: int, box: tuple[int, int, int, int]) -> bytes:
    """`data` with a filled black rectangle drawn on `page` (PDF points, from bottom left)."""
    pdf = pikepdf.open(io.BytesIO(data))
    x0, y0, x1, y1 = box
    target = pdf.pages[page]
    target.contents_add(pikepdf.Stream(pdf, b"q\n"), prepend=True)  # the page's own state
    target.contents_add(
        pikepdf.Stream(pdf, f"\nQ q 0 g {x0} {y0} {x1 - x0} {y1 - y0} re f Q".encode())
    )
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_compare_pdfs_identical_documents_show_no_difference() -> None:
    data = _pdf(ONE_PAGE)
    result = run_limited(compare_pdfs, data, data, limits=Limits(seconds=30))
    assert (result.issued_pages, result.returned_pages) == (1, 1)
    [page] = result.pages
    assert page.status == "same" and page.boxes == () and page.changed == 0
    # 100 dpi: an A4 page (595 x 842 pt) is about 827 x 1169 pixels, as poppler renders it
    image = _png(page.returned)
    assert image.format == "PNG" and abs(image.width - 827) <= 2 and abs(image.height - 1169) <= 2


def test_compare_pdfs_boxes_cover_the_change_and_are_red_on_the_returned_page(
    tmp_path: Path,
) -> None:
    issued = _pdf(ONE_PAGE)
    returned = _stamped(issued, page=0, box=(300, 100, 400, 150))  # bottom right area
    result = run_limited(compare_pdfs, issued, returned, limits=Limits(seconds=30))
    [page] = result.pages
    assert page.status == "different" and len(page.boxes) == 1
    x0, y0, x1, y1 = page.boxes[0]
    scale = 100 / 72  # the rectangle, in pixels from the top left
    height = _png(page.returned).height
    assert x0 <= 300 * scale <= 400 * scale <= x1 + 1
    assert y0 <= height - 150 * scale <= height - 100 * scale <= y1 + 1
    assert (x1 - x0) < 200 and (y1 - y0) < 120  # only the change, not the page
    image = _png(page.returned).convert("RGB")
    r, g, b = image.getpixel((x0 + 1, (y0 + y1) // 2))  # the outline: red
    assert r > 150 and g < 60 and b < 60
    # the issued page is left as rendered: identical to poppler's rendering at 100 dpi
    (tmp_path / "issued.pdf").write_bytes(issued)
    subprocess.run(
        ["pdftoppm", "-r", "100", "-png", "-singlefile", "issued.pdf", "poppler"],
        cwd=tmp_path,
        check=True,
    )
    poppler = Image.open(tmp_path / "poppler.png").convert("L")
    ours = _png(page.issued).convert("L")
    assert abs(poppler.width - ours.width) <= 2 and abs(poppler.height - ours.height) <= 2


def test_compare_pdfs_pages_with_different_counts_are_missing_or_extra() -> None:
    two = _pdf(ONE_PAGE.replace("</body>", '<p style="break-before: page">Suite</p></body>'))
    one = _pdf(ONE_PAGE)
    result = run_limited(compare_pdfs, two, one, limits=Limits(seconds=30))
    assert [p.status for p in result.pages] == ["same", "missing"]
    assert result.pages[1].returned is None and result.pages[1].issued is not None
    result = run_limited(compare_pdfs, one, two, limits=Limits(seconds=30))
    assert [p.status for p in result.pages] == ["same", "extra"]
    assert result.pages[1].issued is None


def test_compare_pdfs_refuses_what_pdfium_cannot_read() -> None:
    from signing.errors import Refused

    with pytest.raises(Refused) as caught:
        run_limited(compare_pdfs, _pdf(ONE_PAGE), b"%PDF-1.7\n garbage", limits=Limits(seconds=30))
    assert caught.value.code == "malformed_pdf"


# -- the review page -------------------------------------------------------------------------


@pytest.fixture
def pending(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], pki: Pki
) -> dict[str, Any]:
    """A return waiting for review: signed by an untrusted signer, a visible stamp added."""
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    session = portal(client, kit["access_code"]).json
    headers = {"Authorization": f"Bearer {session['token']}"}
    issued = issued_pdf(client, headers, kit, PIECES[0])
    r = upload(client, headers, kit, PIECES[0], sign_pdf(issued, pki.untrusted))
    assert r.status_code == 201 and r.json["status"] == "pending_review", r.json
    pages = next(d["pages"] for d in kit["documents"] if d["kind"] == PIECES[0])
    return {"id": r.json["id"], "pages": pages}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_page_shows_each_page_as_images_with_the_signature_highlighted(
    app: Flask, client: FlaskClient, pending: dict[str, Any], artifacts: Path
) -> None:
    sign_in(app, client, "relecture@assureur.fr")
    page = client.get(f"/revue/{pending['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<object" not in html and "special-conditions</h1>" not in html
    assert "Conditions particulières" in html
    # no code reaches a person: who sent it and when (Paris time), in French
    assert "employer:" not in html and f"déposé par : {labels.actor(f'employer:{SIRET}')}" in html
    assert re.search(r"reçu le \d{1,2}(?:er)? [a-zéû]+ \d{4} à \d{1,2} h \d\d", html)
    n = pending["pages"]
    assert f"Document émis : {n} pages ; pièce retournée : {n} pages." in html
    assert "Une page diffère" in html
    images = re.findall(r'<img src="(/revue/\d+/pages/(\d+)-(emis|retour)\.png)" alt="', html)
    assert len(images) == 2 * n
    # the stamp that signing added on the last page is highlighted, and only there
    assert re.search(rf"Page {n} de la pièce retournée, \d+ zones? différentes? encadrée", html)
    assert not re.search(r"Page 1 de la pièce retournée, \d+ zone", html)
    for url, _, _ in images:
        r = client.get(url)
        assert r.status_code == 200 and r.mimetype == "image/png", url
        assert "immutable" in r.headers["Cache-Control"] and r.headers["ETag"]
        assert "img-src 'self'" in r.headers["Content-Security-Policy"]
        image = _png(r.data)
        assert image.format == "PNG" and image.width > 800
        again = client.get(url, headers={"If-None-Match": r.headers["ETag"]})
        assert again.status_code == 304
    # the highlighted page carries red pixels; the issued one has none
    red = [(url, side) for url, number, side in images if number == str(n)]
    for url, side in red:
        rgb = _png(client.get(url).data).convert("RGB").tobytes()
        pixels = zip(rgb[0::3], rgb[1::3], rgb[2::3], strict=True)
        reddish = sum(1 for r, g, b in pixels if r > 150 and g < 60 and b < 60)
        assert (reddish > 100) == (side == "retour"), side
        (artifacts / f"revue-page-{side}.png").write_bytes(client.get(url).data)
    assert client.get(f"/revue/{pending['id']}/pages/{n + 1}-emis.png").status_code == 404
    assert client.get(f"/revue/{pending['id']}/pages/0-emis.png").status_code == 404
    assert client.get(f"/revue/{pending['id']}/pages/99-retour.png").status_code == 404
    assert client.get(f"/revue/{pending['id']}/pages/1-autre.png").status_code == 404
    # the original stays a download, sandboxed
    r = client.get(f"/retours/{pending['id']}.pdf")
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
    r.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_preview_is_made_once_and_kept_in_the_document_store(
    app: Flask, client: FlaskClient, pending: dict[str, Any]
) -> None:
    from service.backends import document_store

    sign_in(app, client, "relecture@assureur.fr")
    assert client.get(f"/revue/{pending['id']}").status_code == 200
    with app.app_context():
        store = document_store()
        keys = [info.key for info in store.list("previews/")]
        manifest = next(k for k in keys if k.endswith("manifest.json"))
        assert sum(k.endswith(".png") for k in keys) == 2 * pending["pages"]
        before = store.head(manifest).last_modified
    assert client.get(f"/revue/{pending['id']}").status_code == 200
    with app.app_context():
        assert document_store().head(manifest).last_modified == before


def test_review_images_are_404_for_anyone_but_staff(
    app: Flask, client: FlaskClient, pending: dict[str, Any]
) -> None:
    url = f"/revue/{pending['id']}/pages/1-retour.png"
    assert client.get(url).status_code == 404  # anonymous
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    r = client.get(url)
    assert r.status_code == 404 and r.mimetype != "image/png"
    sign_in(app, client, "relecture@assureur.fr")
    assert client.get(url).status_code == 200


# -- French wording, bounded rendering, warnings ---------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_page_signers_read_in_french_in_paris_time(
    app: Flask, client: FlaskClient, pending: dict[str, Any]
) -> None:
    from service.returns.models import KitReturn

    sign_in(app, client, "relecture@assureur.fr")
    html = client.get(f"/revue/{pending['id']}").get_data(as_text=True)
    with app.app_context():
        [signer] = db.session.get(KitReturn, pending["id"]).verification["signers"]
    # the stored verification keeps ISO UTC and asn1crypto's English names…
    assert signer["signing_time"].endswith("+00:00") and "Common Name: " in signer["issuer"]
    # …the page shows neither
    assert "+00:00" not in html and "Common Name" not in html and "Organization:" not in html
    assert "Country" not in html
    moment = labels.paris(datetime.fromisoformat(signer["signing_time"]))
    assert moment is not None
    expected = f"{long_date(moment.date())} à {moment.hour} h {moment:%M}"
    assert f"<td>{expected}</td>" in html
    assert re.search(r"<td>[^<]*Nom : [^<]*Pays : FR[^<]*</td>", html), html


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_page_while_another_request_renders_says_so_and_images_answer_503(
    app: Flask, client: FlaskClient, pending: dict[str, Any]
) -> None:
    from service.backends import document_store
    from service.ratelimit import limiter
    from service.returns.models import KitReturn
    from service.returns.preview import claim_name

    sign_in(app, client, "relecture@assureur.fr")
    with app.app_context():
        name = claim_name(db.session.get(KitReturn, pending["id"]))
        assert limiter().claim(name, 60)  # another request is rendering this return
    page = client.get(f"/revue/{pending['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Aperçu en préparation, rechargez dans quelques instants." in html
    assert "<img" not in html and "n'a pas été examiné ni conservé" not in html
    image = client.get(f"/revue/{pending['id']}/pages/1-retour.png")
    assert image.status_code == 503 and image.headers["Retry-After"] == "5"
    with app.app_context():
        assert list(document_store().list("previews/")) == []  # nothing rendered meanwhile
        limiter().release(name)
    html = client.get(f"/revue/{pending['id']}").get_data(as_text=True)
    assert "Aperçu en préparation" not in html and "<img" in html
    # made once: the images are read back even while a renderer holds the marker
    with app.app_context():
        assert limiter().claim(name, 60)
    r = client.get(f"/revue/{pending['id']}/pages/1-retour.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert client.get(f"/revue/{pending['id']}").status_code == 200
    with app.app_context():
        limiter().release(name)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_page_on_a_busy_machine_asks_to_reload_not_to_upload_again(
    app: Flask, client: FlaskClient, pending: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.returns import preview

    # the wall clock runs out long before the CPU budget: the sandbox says "busy"
    monkeypatch.setattr(preview, "LIMITS", Limits(seconds=30, wall_seconds=0.001))
    sign_in(app, client, "relecture@assureur.fr")
    page = client.get(f"/revue/{pending['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Aperçu en préparation, rechargez dans quelques instants." in html
    assert "n'a pas été examiné ni conservé" not in html
    image = client.get(f"/revue/{pending['id']}/pages/1-emis.png")
    assert image.status_code == 503 and image.headers["Retry-After"]
    assert "n'a pas été examiné ni conservé" not in image.get_data(as_text=True)
    monkeypatch.undo()  # the claim was released: the next request renders
    assert "<img" in client.get(f"/revue/{pending['id']}").get_data(as_text=True)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_preview_renders_at_most_the_request_pages_per_side(
    app: Flask, client: FlaskClient, pending: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.returns import preview

    assert preview.REQUEST_PAGES == 20
    assert pending["pages"] > 1
    monkeypatch.setattr(preview, "REQUEST_PAGES", 1)
    sign_in(app, client, "relecture@assureur.fr")
    html = client.get(f"/revue/{pending['id']}").get_data(as_text=True)
    n = pending["pages"]
    assert f"Document émis : {n} pages ; pièce retournée : {n} pages." in html
    assert "Seules les 1 premières pages sont affichées" in html
    assert len(re.findall(r'<img src="/revue/\d+/pages/1-(?:emis|retour)\.png"', html)) == 2
    assert "/pages/2-" not in html
    assert client.get(f"/revue/{pending['id']}/pages/2-retour.png").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite"])
def test_review_page_warns_before_accepting_a_return_that_loses_pdfa(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], pki: Pki
) -> None:
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    session = portal(client, kit["access_code"]).json
    headers = {"Authorization": f"Bearer {session['token']}"}
    issued = issued_pdf(client, headers, kit, PIECES[0])
    courier = sign_pdf(issued, pki.untrusted, embedded_font=False)
    r = upload(client, headers, kit, PIECES[0], courier)
    assert r.json["status"] == "pending_review" and r.json["pdfa_preserved"] is False, r.json
    sign_in(app, client, "relecture@assureur.fr")
    html = client.get(f"/revue/{r.json['id']}").get_data(as_text=True)
    warning = html.index('id="pdfa-warning"')
    assert warning < html.index('value="accept"')  # read before the button
    assert "format d'archivage PDF/A perdu" in html
    assert "Le document signé utilise une police non incorporée (Courier)" in html
    # a return that keeps PDF/A carries no such warning
    other = sign_pdf(issued_pdf(client, headers, kit, PIECES[1]), pki.trusted_rsa)
    r = upload(client, headers, kit, PIECES[1], other)
    assert r.json["pdfa_preserved"] is True, r.json
    assert 'id="pdfa-warning"' not in client.get(f"/revue/{r.json['id']}").get_data(as_text=True)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_employer_page_refused_return_says_file_not_kept_instead_of_a_dead_link(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    session = portal(client, kit["access_code"]).json
    headers = {"Authorization": f"Bearer {session['token']}"}
    r = upload(client, headers, kit, PIECES[0], b"%PDF-1.7\n pas un vrai PDF\n%%EOF\n")
    assert r.status_code == 422, r.json
    sign_in(app, client, "relecture@assureur.fr")
    html = client.get(f"/employeurs/{SIRET}").get_data(as_text=True)
    assert "fichier non conservé (refusé)" in html
    assert not re.search(r'href="/retours/\d+\.pdf"', html)


@pytest.mark.parametrize("uri", ["memory://", "redis://127.0.0.1:6379/0"])
def test_limiter_claim_is_taken_once_released_and_lapses_by_itself(uri: str) -> None:
    from service.ratelimit import RateLimiter

    limiter = RateLimiter(uri, prefix=f"test-{uuid.uuid4().hex}")
    assert limiter.claim("review-preview/1", 60) is True
    assert limiter.claim("review-preview/1", 60) is False  # a second renderer waits
    assert limiter.claim("review-preview/2", 1) is True  # another return: its own marker
    limiter.release("review-preview/1")
    assert limiter.claim("review-preview/1", 60) is True
    assert limiter.claim("review-preview/2", 1) is False
    time.sleep(1.2)  # a holder that died: its marker lapses
    assert limiter.claim("review-preview/2", 1) is True
    limiter.release("review-preview/1")
    limiter.release("review-preview/2")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stored_pdf_page_drawn_once_claimed_and_bounded(app: Flask) -> None:
    pdf = (CORPUS / "pairs" / "valid_modification" / "unsigned.pdf").read_bytes()
    with app.app_context():
        store = document_store()
        store.put("essai/piece.pdf", pdf, content_type="application/pdf")
        prefix = f"previews/essai/{uuid.uuid4().hex[:8]}"
        claim = f"pdf-pages/{prefix}"
        assert limiter().claim(claim, 60)  # another request is drawing these pages
        try:
            with pytest.raises(PreviewPending):
                stored_pdf_page(
                    store=store,
                    pdf_key="essai/piece.pdf",
                    prefix=prefix,
                    number=1,
                    max_pages=2,
                    wait_seconds=0.5,
                )
        finally:
            limiter().release(claim)
        first = stored_pdf_page(
            store=store, pdf_key="essai/piece.pdf", prefix=prefix, number=1, max_pages=2
        )
        assert first.startswith(b"\x89PNG")
        assert Image.open(io.BytesIO(first)).size[0] > 100
        assert store.get(f"{prefix}/001.png") == first  # kept: the next reader gets it
        store.delete("essai/piece.pdf")  # drawn before: the PDF is not read again
        again = stored_pdf_page(
            store=store, pdf_key="essai/piece.pdf", prefix=prefix, number=1, max_pages=2
        )
        assert again == first
        with pytest.raises(NotFound):
            stored_pdf_page(
                store=store, pdf_key="essai/piece.pdf", prefix=prefix, number=3, max_pages=2
            )
