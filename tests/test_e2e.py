"""The whole journey in Debian's Chromium driven by Playwright, with accessibility checks.

Staff issue a kit, the employer signs in and uploads (one refusal, then good pieces), staff
review and countersign, the CDG downloads the archived copy. Any browser console error fails.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from service.extensions import db
from tests.conftest import (
    CDG81,
    CONVENTION,
    auth,
    create_token,
    record_prerequisites,
    run_jobs,
)
from tests.pki import Pki, sign_pdf

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PAGES_CHECKED: list[str] = []


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def off_loop(fn: Any, *args: Any) -> Any:
    """pyHanko runs its own event loop: call it away from Playwright's."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


class Session:
    """One browser context with console-error tracking, screenshots and axe checks."""

    def __init__(self, browser: Any, base: str, shots: Path, *, width: int = 1280) -> None:
        self.context = browser.new_context(
            viewport={"width": width, "height": 900}, accept_downloads=True, locale="fr-FR"
        )
        self.page = self.context.new_page()
        self.base = base
        self.shots = shots
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "response", lambda r: r.status >= 400 and self.errors.append(f"{r.status} {r.url}")
        )

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def check_a11y(self, name: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        results = Axe().run(self.page)
        serious = [
            v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")
        ]
        assert serious == [], (
            name,
            [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in serious],
        )
        PAGES_CHECKED.append(name)
        self.shot(name)

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_whole_journey_in_a_real_browser(
    app: Flask, live: str, browser: Any, pki: Pki, artifacts: Path, tmp_path: Path
) -> None:
    from service.accounts.auth import create_user

    client = app.test_client()
    staff_token = auth(create_token(app, "admin", "setup@assureur.fr"))
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff_token).status_code == 201
    assert (
        client.post("/api/v1/conventions", json=CONVENTION, headers=staff_token).status_code == 201
    )
    with app.app_context():
        create_user(email="agent@assureur.fr", role="staff", password="mot de passe staff")
        create_user(
            email="suivi@cdg81.fr", role="cdg", cdg_code="81", password="mot de passe cdg81"
        )
        db.session.commit()
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)

    # -- staff: sign in, create the employer (one rule error first), issue the kit ----------
    staff = Session(browser, live, shots)
    page = staff.page
    staff.go("/")
    assert "/connexion" in page.url
    staff.check_a11y("connexion")
    page.fill("#email", "agent@assureur.fr")
    page.fill("#password", "mauvais mot de passe")
    page.click("button[type=submit]")
    assert "Adresse ou mot de passe incorrect" in page.inner_text("main")
    page.fill("#email", "agent@assureur.fr")
    page.fill("#password", "mot de passe staff")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Tableau de bord')")
    staff.check_a11y("tableau-de-bord")

    page.click("text=Nouvel employeur")
    form = {
        "#siret": "21810004800014",
        "#name": "L'Isle-sur-Tarn",
        "#address": "Place Paul Saissac, 81310 Lisle-sur-Tarn",
        "#email": "rh@lisle-sur-tarn.fr",
        "#headcount": "85",
        "#cst_opinion_on": "2024-10-01",
        "#deliberation_on": "2024-11-15",
        "#amount": "5,00",
    }
    for selector, value in form.items():
        page.fill(selector, value)
    page.click("button:has-text('Créer l')")
    error = page.inner_text("#amount-error")
    assert "au moins 7,00 €" in error
    assert page.evaluate("document.activeElement.id") == "amount"  # focus on the first error
    staff.check_a11y("employeur-formulaire-erreur")
    page.fill("#amount", "15,00")
    page.click("button:has-text('Créer l')")
    page.wait_for_selector('h1:has-text("L\'Isle-sur-Tarn")')
    assert "incomplètes" in page.inner_text("#pieces-title")
    # its papers came by post (see tests/test_subscriptions_browser.py for the online request)
    record_prerequisites(app, "21810004800014")
    page.reload()
    assert "incomplètes" not in page.inner_text("#pieces-title")
    page.click("button:has-text('Émettre le kit')")
    code = page.inner_text("#access-code").strip()
    assert re.fullmatch(r"([A-Z0-9]{4}-){3}[A-Z0-9]{4}", code)
    staff.check_a11y("kit-emis")
    page.click("text=Retour à la fiche")
    staff.check_a11y("fiche-employeur")
    page.click("text=Simulateur")
    page.fill("#gross", "1500")
    page.fill("#contribution", "15")
    page.click("button:has-text('Calculer')")
    assert page.inner_text("#premium").strip().replace("\u00a0", " ") == "34,50 €"
    assert page.inner_text("#share").strip().replace("\u00a0", " ") == "19,50 €"
    staff.check_a11y("simulateur")

    with app.app_context():
        from service.backends import document_store
        from service.kits.models import KitDocument

        issued = {
            d.kind: document_store().get(d.pdf_key)
            for d in db.session.scalars(db.select(KitDocument))
        }
    untrusted = tmp_path / "conditions-signees.pdf"
    untrusted.write_bytes(off_loop(sign_pdf, issued["special-conditions"], pki.untrusted))
    trusted = tmp_path / "convention-signee.pdf"
    trusted.write_bytes(off_loop(sign_pdf, issued["membership-agreement"], pki.trusted))
    not_pdf = tmp_path / "photo.pdf"
    not_pdf.write_bytes(b"\x89PNG\r\n\x1a\n not a pdf at all")

    # -- employer: portal, download, one refused upload, then both pieces --------------------
    employer = Session(browser, live, shots, width=390)  # phone width
    page = employer.page
    employer.go("/portail")
    employer.check_a11y("portail-connexion")
    page.fill("#siret", "218 100 048 00014")
    page.fill("#access_code", code.lower())
    page.click("button:has-text('Accéder')")
    page.wait_for_selector("h1:has-text('Kit PSC-81-')")
    employer.check_a11y("portail-kit")
    with page.expect_download() as download:
        page.click("text=Conditions particulières")
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == (
        hashlib.sha256(issued["special-conditions"]).hexdigest()
    )
    page.set_input_files("#file-special-conditions", str(not_pdf))
    page.click("#piece-special-conditions ~ form button")
    assert "n'est pas un PDF" in page.inner_text(".flash-error")
    employer.check_a11y("portail-refus")
    page.set_input_files("#file-special-conditions", str(untrusted))
    page.click("#piece-special-conditions ~ form button")
    assert "vérifiée par nos équipes" in page.inner_text(".flash-ok")
    page.set_input_files("#file-membership-agreement", str(trusted))
    page.click("#piece-membership-agreement ~ form button")
    assert "acceptée" in page.inner_text(".flash-ok")
    assert "Acceptée" in page.inner_text("#status-membership-agreement")
    assert "en cours de vérification" in page.inner_text("#status-special-conditions")
    employer.shot("portail-deposes")

    # -- staff: review, accept, countersign, audit trail --------------------------------------
    page = staff.page
    page.click("text=Revue des retours")
    staff.check_a11y("revue-liste")
    page.click("text=L'Isle-sur-Tarn")
    assert "Jean Inconnu" in page.inner_text("main")
    assert "non reconnu" in page.inner_text("main")
    staff.check_a11y("revue-examen")
    page.click("button[value=accept]")
    page.wait_for_selector("button:has-text('Contresigner le kit')")
    page.check("#confirm-countersign")
    page.click("button:has-text('Contresigner le kit')")
    assert "Kit contresigné" in page.inner_text(".flash-ok")
    run_jobs(app)  # the archive copies, as a worker runs them
    page.reload()
    assert "Archivé" in page.inner_text("h2")
    page.click("text=Journal d'audit")
    assert "Pièce contresignée par l'assureur" in page.inner_text("table")
    assert "countersigned" not in page.inner_text("main")
    staff.check_a11y("journal")

    # the employer sees both pieces countersigned
    employer.go("/portail/kit")
    assert "signé des deux parties" in employer.page.inner_text("#status-special-conditions")

    # -- CDG: tracking, chart, CSV, archived copy -------------------------------------------
    cdg = Session(browser, live, shots)
    page = cdg.page
    cdg.go("/connexion")
    page.fill("#email", "suivi@cdg81.fr")
    page.fill("#password", "mot de passe cdg81")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Suivi des adhésions')")
    assert "Archivé" in page.inner_text("table")
    assert page.locator("svg.chart-svg rect.s-archived").count() == 12
    cdg.check_a11y("cdg-suivi")
    with page.expect_download() as csv_download:
        page.click("text=Exporter le suivi")
    assert Path(csv_download.value.path()).read_bytes().startswith(b"\xef\xbb\xbfSIRET;")
    with page.expect_download() as archived:
        page.click("text=Conditions particulières")
    data = Path(archived.value.path()).read_bytes()
    with app.app_context():
        from service.archive.models import ArchiveRecord

        record = db.session.scalar(
            db.select(ArchiveRecord).where(ArchiveRecord.kind == "special-conditions")
        )
        assert hashlib.sha256(data).hexdigest() == record.sha256
    assert data.startswith(issued["special-conditions"])

    for session in (staff, employer, cdg):
        session.close()
    assert len(PAGES_CHECKED) >= 12


@pytest.mark.parametrize("backend", ["sqlite"])
def test_forms_refuse_a_missing_csrf_token(app: Flask) -> None:
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    r = client.post(
        "/connexion", data={"email": "a@b.fr", "password": "x"}, headers={"Accept": "text/html"}
    )
    assert r.status_code == 400 and "formulaire a expiré" in r.get_data(as_text=True)
    page = client.get("/connexion")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    cookie = page.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
