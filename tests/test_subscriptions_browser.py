"""The subscription journey in Debian's Chromium: a collectivité fills in the CDG's public form
(phone-sized screen) with its files, confirms its address from the e-mailed link, and staff
examine the request (files drawn as page images) and accept it. Screenshots in
tests/artifacts/screenshots; axe finds nothing serious on any page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service.extensions import db
from tests.conftest import CDG81, CONVENTION, CORPUS, auth, create_token
from tests.test_e2e import Session, browser, live  # noqa: F401  (fixtures)
from tests.test_french_wording import mails
from tests.test_subscriptions import xlsx

PDF = CORPUS / "pairs" / "valid_modification" / "unsigned.pdf"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_journey_in_a_real_browser(
    app: Flask,
    live: str,  # noqa: F811
    browser: Any,  # noqa: F811
    artifacts: Path,
    tmp_path: Path,
) -> None:
    from service.accounts.auth import create_user

    client = app.test_client()
    setup = auth(create_token(app, "admin", "setup@assureur.fr"))
    assert client.post("/api/v1/cdgs", json=CDG81, headers=setup).status_code == 201
    assert client.post("/api/v1/conventions", json=CONVENTION, headers=setup).status_code == 201
    with app.app_context():
        create_user(email="agent@assureur.fr", role="staff", password="mot de passe staff")
        db.session.commit()
    shots = artifacts / "screenshots"
    shots.mkdir(exist_ok=True)
    listing = tmp_path / "elements.xlsx"
    listing.write_bytes(xlsx())

    # -- the collectivité, on a phone ---------------------------------------------------------
    public = Session(browser, live, shots, width=390)
    page = public.page
    public.go("/cdg/81/souscription")
    assert page.locator("h1").inner_text() == "Demande de souscription à la prévoyance"
    public.check_a11y("souscription-formulaire")
    page.fill("#siret", "21810004800014")
    page.fill("#name", "Albi")
    page.select_option("#kind", "commune")
    page.fill("#address", "16 rue de l'Hôtel de Ville, 81000 Albi")
    page.fill("#email", "rh@mairie-albi.fr")
    page.fill("#headcount", "560")
    page.fill("#cst_opinion_on", "2024-10-01")
    page.fill("#deliberation_on", "2024-09-01")  # before the CST opinion: refused first
    page.fill("#amount", "15,00")
    page.fill("#contact_name", "Claire Martin")
    page.fill("#contact_email", "secretariat@mairie-albi.fr")
    page.set_input_files("#deliberation", str(PDF))
    page.set_input_files("#cst_opinion", str(PDF))
    page.set_input_files("#premium_elements", str(listing))
    with page.expect_navigation():
        page.click("button[type=submit]")
    summary = page.locator("#error-summary").inner_text()
    assert "La délibération doit suivre l'avis du comité social territorial" in summary
    public.shot("souscription-erreur")
    page.fill("#deliberation_on", "2024-11-15")
    page.set_input_files("#deliberation", str(PDF))
    page.set_input_files("#cst_opinion", str(PDF))
    page.set_input_files("#premium_elements", str(listing))
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Vérifiez votre messagerie"
    public.check_a11y("souscription-envoyee")

    message = [m for m in mails(app) if "Confirmez" in str(m["Subject"])][-1]
    body = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(
        r"http://portail\.test\.local(/cdg/81/souscription/confirmation\?jeton=\S+)", body
    )
    assert link is not None, body
    public.go(link.group(1))
    public.check_a11y("souscription-confirmation")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "votre demande est transmise au gestionnaire" in page.locator("#confirmed").inner_text()
    public.shot("souscription-confirmee")
    public.close()

    # -- staff examine and accept ---------------------------------------------------------------
    staff = Session(browser, live, shots)
    page = staff.page
    staff.go("/connexion?suivant=/souscriptions")
    page.fill("#email", "agent@assureur.fr")
    page.fill("#password", "mot de passe staff")
    page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Demandes de souscription"
    staff.check_a11y("souscriptions-liste")
    with page.expect_navigation():
        page.click("#subscriptions a")
    assert "Demande de souscription : Albi" in page.locator("h1").inner_text()
    images = page.locator("figure img")
    assert images.count() >= 2
    images.first.scroll_into_view_if_needed()
    for _ in range(100):  # drawn on the server in the sandbox: a PNG the browser shows
        if images.first.evaluate("img => img.complete && img.naturalWidth > 0"):
            break
        page.wait_for_timeout(200)
    assert images.first.evaluate("img => img.naturalWidth") > 100
    staff.check_a11y("souscription-examen")
    with page.expect_navigation():
        page.click("button[value=accept]")
    assert "Demande acceptée" in page.locator("main").inner_text()
    title = page.locator("#pieces-title").inner_text()
    assert "complètes" in title and "incomplètes" not in title
    assert page.locator("#prerequisites tbody tr").count() == 4
    staff.check_a11y("souscription-employeur")
    staff.close()
