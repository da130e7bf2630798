"""Signing in the browser from the portal's pages, in Chromium at phone width (390 × 844), the
signature drawn with touch events (Chrome DevTools Protocol), the code read from the outbox."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pyhanko.pdf_utils.reader import PdfFileReader

from service.backends import document_store
from service.esign.models import SigningRequest
from service.extensions import db
from service.returns.models import KitReturn
from tests.test_browser_signing import SIGNATORY, last_code
from tests.test_e2e import browser, live  # noqa: F401  (fixtures)
from tests.test_returns import PIECES, SIRET, kit

__all__ = ["kit"]


def _axe_serious(page: Any) -> list[Any]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        (v["id"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def _touch_stroke(cdp: Any, points: list[tuple[float, float]]) -> None:
    first, *rest = points
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": "touchStart", "touchPoints": [{"x": first[0], "y": first[1]}]},
    )
    for x, y in rest:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.parametrize("backend", ["sqlite"])
def test_browser_signing_pages_at_phone_width_with_a_drawn_signature(
    app: Flask,
    client: FlaskClient,
    kit: dict[str, Any],
    live: str,  # noqa: F811
    browser: Any,  # noqa: F811
    artifacts: Path,
) -> None:
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
        locale="fr-FR",
        user_agent="Mozilla/5.0 (Linux; Android 14) Mobile Chromium (test)",
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(live + "/portail")
    page.fill("#siret", SIRET)
    page.fill("#access_code", kit["access_code"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Kit')")
    page.click(f"#piece-{PIECES[0]} ~ p a:has-text('Signer en ligne')")
    page.click("text=désigner le signataire")
    page.fill("#name", SIGNATORY["name"])
    page.fill("#title", "")
    page.fill("#email", SIGNATORY["email"])
    page.click("button:has-text('Enregistrer le signataire')")
    assert page.inner_text("#title-error")  # the error next to its field, in French
    page.wait_for_function("document.activeElement && document.activeElement.id === 'title'")
    assert _axe_serious(page) == []
    page.screenshot(path=str(shots / "signataire-erreur-390.png"), full_page=True)
    assert errors == [
        "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
    ]  # the form's answer, as expected
    errors.clear()
    page.fill("#title", SIGNATORY["title"])
    page.click("button:has-text('Enregistrer le signataire')")
    page.wait_for_selector("h1:has-text('Signer en ligne')")

    # the pages as images, loaded
    images = page.locator(".sign-pages img")
    assert images.count() >= 1
    for index in range(images.count()):
        images.nth(index).scroll_into_view_if_needed()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=images.nth(index).element_handle()
        )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll

    page.click("#send-code")
    page.wait_for_selector("text=Code envoyé")
    code = last_code(app)

    page.check("#consent")
    canvas = page.locator("canvas.signature-pad")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None and box["width"] <= 390
    cdp = context.new_cdp_session(page)
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    _touch_stroke(
        cdp,
        [
            (x0 + w * f, y0 + h * (0.5 + 0.35 * ((-1) ** i) * (1 - f)))
            for i, f in enumerate([0.08, 0.18, 0.28, 0.38, 0.48, 0.58, 0.68, 0.78, 0.9])
        ],
    )
    _touch_stroke(cdp, [(x0 + w * 0.15, y0 + h * 0.8), (x0 + w * 0.85, y0 + h * 0.75)])
    drawn = page.input_value("input[name=drawn]")
    assert drawn.startswith("data:image/png;base64,") and len(drawn) > 500
    page.fill("#code", code)
    assert _axe_serious(page) == []
    page.screenshot(path=str(shots / "signature-en-ligne-390.png"), full_page=True)
    page.click("#confirm-sign")
    page.wait_for_selector("text=signée en ligne et acceptée")
    page.screenshot(path=str(shots / "signature-en-ligne-acceptee-390.png"), full_page=True)
    assert errors == [], errors
    context.close()

    with app.app_context():
        ret = db.session.scalars(db.select(KitReturn)).one()
        assert ret.status == "accepted" and ret.kind == PIECES[0]
        req = db.session.scalars(db.select(SigningRequest)).one()
        assert req.status == "used" and req.return_id == ret.id
        signed = document_store().get(ret.storage_key)
    [sig] = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    assert sig.signer_cert.subject.native["common_name"] == SIGNATORY["name"]
    (artifacts / "browser-signed-from-the-page.pdf").write_bytes(signed)
