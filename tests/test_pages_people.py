"""Pages a person can rely on: French labels only, every form error at once, confirmations,
kit cancellation, the audit trail and its CSV, recorded downloads, amounts as people type them,
and no sideways scroll at phone width."""

from __future__ import annotations

import csv
import email
import hashlib
import io
import re
from collections import deque
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import formatting, labels
from service.extensions import db
from service.kits.render import DOCUMENT_KINDS
from service.reference.schemas import EMPLOYER_KINDS
from tests.conftest import auth, employer_payload, record_prerequisites, run_jobs
from tests.pki import Pki, sign_pdf
from tests.test_e2e import browser, live  # noqa: F401  (fixtures)
from tests.test_pages import csrf, sign_in
from tests.test_reference_api import assert_error

SIRET = "21810004800014"
OTHER = "21810001400016"  # Aguts
PIECES = ("special-conditions", "membership-agreement")

#: what a person must never read: kinds, states, event names, actors' prefixes
CODES = sorted(
    {
        *DOCUMENT_KINDS,
        *(k for k in labels.KIT_STATES if k != "none"),
        *labels.RETURN_STATES,
        *labels.EVENTS,
        "system",
    },
    key=len,
    reverse=True,
)
#: employers' kind codes (`cc`, `ca`, `commune`…) are also French words or syllables: they count
#: only as a whole cell (a table cell of a page, a CSV cell), never inside a sentence
KIND_CODES = sorted(EMPLOYER_KINDS, key=len, reverse=True)
#: `crawl` marks table cells, list items and definitions with it (`visible_text(cells=True)`)
CELL = "\u241f"
CODE_RE = re.compile(
    r"(?<![\w-])(?:" + "|".join(re.escape(c) for c in CODES) + r")(?![\w-])"
    r"|\b(?:employer|staff|cdg|admin|portail):"
    rf"|(?:(?<=[;{CELL}\n])|^)[ \t]*(?:"
    + "|".join(re.escape(c) for c in KIND_CODES)
    + rf")[ \t]*(?=[;{CELL}\r\n]|$)",
    re.MULTILINE,
)


def visible_text(html: str, *, cells: bool = False) -> str:
    """The text a person reads; with `cells`, every table cell, list item and definition is
    framed by CELL so that a code alone in a cell can be told from a word in a sentence."""
    tree = lxml.html.fromstring(html)
    for node in tree.xpath("//script|//style"):
        node.drop_tree()
    if cells:
        for node in tree.xpath("//td|//th|//li|//dd|//dt"):
            node.text = CELL + (node.text or "")
            node.tail = CELL + (node.tail or "")
    return " ".join(tree.text_content().split())


def codes_in(text: str) -> list[str]:
    return sorted({found.strip() for found in CODE_RE.findall(text)})


def test_codes_in_finds_kind_codes_alone_in_cells_not_in_sentences() -> None:
    html = (
        "<table><tr><td>Albi</td><td> ca </td><td>Émis</td></tr>"
        "<tr><td>La commune d'Albi, ca va</td><td>Commune</td></tr></table>"
        "<ul><li>etablissement</li></ul><p>ca ira, cc</p>"
    )
    assert codes_in(visible_text(html, cells=True)) == ["ca", "etablissement"]
    csv_text = "SIRET;Type\r\n218 100 048 00014;cc\r\n218 100 014 00016;commune\r\n"
    assert codes_in(csv_text) == ["cc", "commune"]
    assert codes_in("SIRET;Type\r\n218 100 048 00014;Communauté de communes\r\n") == []
    assert codes_in("la commune d'Albi;Syndicat mixte") == []


def crawl(
    client: FlaskClient, start: list[str], limit: int = 60, missing: tuple[str, ...] = ()
) -> dict[str, str]:
    """Every same-site page reachable by GET links from `start`: {path: visible text}; CSV
    exports are read too. Other downloads (PDF, ZIP, DOCX) are not pages."""
    seen: dict[str, str] = {}
    queue = deque(start)
    while queue and len(seen) < limit:
        path = queue.popleft()
        if path in seen:
            continue
        r = client.get(path)
        assert r.status_code in ((404,) if path in missing else (200, 302)), (path, r.status_code)
        if r.status_code == 302:
            seen[path] = ""
            queue.append(r.headers["Location"])
            continue
        if r.mimetype == "text/csv":
            seen[path] = r.data.decode("utf-8-sig")
            continue
        if r.mimetype != "text/html":
            r.close()
            seen[path] = ""
            continue
        html = r.get_data(as_text=True)
        seen[path] = visible_text(html, cells=True)
        for href in lxml.html.fromstring(html).xpath("//a/@href"):
            url = urlsplit(href)
            if url.scheme or url.netloc or not url.path.startswith("/"):
                continue
            if re.search(r"\.(pdf|zip|docx)$", url.path) or "/archives/" in url.path:
                continue
            if url.path.startswith("/revue/"):  # the review page belongs to another area
                continue
            queue.append(url.path + (f"?{url.query}" if url.query else ""))
    return seen


def issue(client: FlaskClient, staff: dict[str, str], siret: str = SIRET) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def employer_token(client: FlaskClient, code: str, siret: str = SIRET) -> dict[str, str]:
    r = client.post("/api/v1/portal/session", json={"siret": siret, "access_code": code})
    assert r.status_code == 200, r.json
    return auth(r.json["token"])


def upload(
    client: FlaskClient, headers: dict[str, str], kit: dict[str, Any], kind: str, data: bytes
) -> Any:
    return client.post(
        f"/api/v1/kits/{kit['id']}/documents/{kind}/returns",
        data={"file": (io.BytesIO(data), "signe.pdf")},
        headers=headers,
        content_type="multipart/form-data",
    )


def issued_pdf(
    client: FlaskClient, headers: dict[str, str], kit: dict[str, Any], kind: str
) -> bytes:
    r = client.get(f"/api/v1/kits/{kit['id']}/documents/{kind}.pdf", headers=headers)
    assert r.status_code == 200
    return r.data


def portal_sign_in(client: FlaskClient, code: str, siret: str = SIRET) -> Any:
    return client.post(
        "/portail",
        data={"siret": siret, "access_code": code, "csrf_token": csrf(client, "/portail")},
    )


def events(app: Flask, kit_id: int) -> list[Any]:
    from service.audit.domain import kit_events

    with app.app_context():
        return [
            (e.event, e.actor, dict(e.details or {}), e.sha256_after) for e in kit_events(kit_id)
        ]


# -- no code on any page, e-mail or CSV -------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_pages_emails_and_csv_show_no_code_to_any_role(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    from service.backends import settings

    kit = issue(client, staff)
    headers = employer_token(client, kit["access_code"])
    # a refused upload, one piece to review (untrusted signer), one accepted: every verdict
    assert upload(client, headers, kit, PIECES[0], b"not a pdf").status_code == 422
    r = upload(
        client,
        headers,
        kit,
        PIECES[0],
        sign_pdf(issued_pdf(client, headers, kit, PIECES[0]), pki.untrusted),
    )
    assert r.json["status"] == "pending_review"
    decision = client.post(
        f"/api/v1/returns/{r.json['id']}/decision", json={"accept": True}, headers=staff
    )
    assert decision.status_code == 200, decision.json
    r = upload(
        client,
        headers,
        kit,
        PIECES[1],
        sign_pdf(issued_pdf(client, headers, kit, PIECES[1]), pki.trusted),
    )
    assert r.json["status"] == "accepted"
    # a second employer whose kit is cancelled
    client.post(
        "/api/v1/employers",
        json=employer_payload(employer["convention_id"], siret=OTHER, name="Aguts"),
        headers=staff,
    )
    record_prerequisites(client.application, OTHER)
    other = issue(client, staff, OTHER)
    r = client.post(
        f"/api/v1/kits/{other['id']}/cancel", json={"reason": "Erreur de SIRET"}, headers=staff
    )
    assert r.status_code == 200, r.json

    # staff countersign from the page (with its confirmation), then crawl every page
    sign_in(app, client, "agent@assureur.fr")
    page = f"/employeurs/{SIRET}"
    r = client.post(
        f"/kits/{kit['id']}/contreseing",
        data={"csrf_token": csrf(client, page), "confirmation": "oui"},
    )
    assert r.status_code == 302
    run_jobs(app)  # the archive copies, as a worker runs them
    body = client.get(page).get_data(as_text=True)
    assert "Archivé" in visible_text(body)
    # the employer page links the copies signed by both parties
    copies = lxml.html.fromstring(body).xpath("//ul[@id='countersigned']//a/@href")
    assert len(copies) == 2
    with app.app_context():
        from service.returns.models import KitReturn

        expected = {
            r.countersigned_sha256
            for r in db.session.scalars(db.select(KitReturn).where(KitReturn.status == "accepted"))
        }
    got = set()
    for href in copies:
        r = client.get(href)
        got.add(hashlib.sha256(r.data).hexdigest())
        r.close()
    assert got == expected and None not in expected
    staff_pages = crawl(
        client,
        [
            "/",
            page,
            f"/employeurs/{OTHER}",
            f"/kits/{kit['id']}/journal",
            f"/kits/{other['id']}/journal",
            "/simulateur?convention=1&gross=1+500&contribution=15&ir=50",
            "/lots/999",
            "/employeurs/00000000000000",
        ],
        missing=("/lots/999", "/employeurs/00000000000000"),
    )
    assert f"/kits/{kit['id']}/journal.csv" in staff_pages and "/cdg" in staff_pages
    assert len(staff_pages) >= 10
    found = {path: codes_in(text) for path, text in staff_pages.items() if codes_in(text)}
    assert found == {}

    client.post("/deconnexion", data={"csrf_token": csrf(client, "/")})
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    cdg_pages = crawl(client, ["/cdg", f"/kits/{kit['id']}/journal", "/simulateur"])
    assert "/cdg/suivi.csv" in " ".join(cdg_pages)
    assert {p: codes_in(t) for p, t in cdg_pages.items() if codes_in(t)} == {}

    client.post("/deconnexion", data={"csrf_token": csrf(client, "/cdg")})
    portal = crawl(client, ["/portail"])
    assert portal_sign_in(client, kit["access_code"]).status_code == 302
    portal.update(crawl(client, ["/portail/kit"]))
    assert "signé des deux parties" in portal["/portail/kit"]
    assert {p: codes_in(t) for p, t in portal.items() if codes_in(t)} == {}
    # the cancelled kit's code is refused in French
    client.post("/portail/deconnexion", data={"csrf_token": csrf(client, "/portail/kit")})
    refused = visible_text(
        portal_sign_in(client, other["access_code"], OTHER).get_data(as_text=True)
    )
    assert "annulé" in refused and codes_in(refused) == []

    run_jobs(app)
    with app.app_context():
        outbox = Path(settings().mail_url.removeprefix("file://"))
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"))
    ]
    assert len(mails) >= 4  # two kits issued, a return refused, countersigned
    for mail in mails:
        text = f"{mail['Subject']} {mail.get_content()}"
        assert codes_in(text) == [], text


# -- forms: the API's schema, every error at once, focus on the first --------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_employer_form_shows_every_error_at_once_like_the_api(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    form = {
        "csrf_token": csrf(client, "/employeurs/nouveau"),
        "siret": "21810004800015",  # bad check digit
        "name": "Albi",
        "kind": "commune",
        "address": "16 rue de l'Hôtel de Ville, 81000 Albi",
        "email": "rh@@mairie-albi",
        "headcount": "-3",
        "convention_id": str(convention["id"]),
        "cst_opinion_on": "2024-10-01",
        "deliberation_on": "",
        "mode": "flat",
        "amount": "5,00",
    }
    r = client.post("/employeurs/nouveau", data=form)
    html = r.get_data(as_text=True)
    tree = lxml.html.fromstring(html)
    errors = {p.get("id"): p.text_content() for p in tree.xpath("//p[@class='error']")}
    assert set(errors) == {
        "siret-error",
        "email-error",
        "headcount-error",
        "deliberation_on-error",
        "amount-error",
    }
    assert "clé de contrôle" in errors["siret-error"]
    assert "négatif" in errors["headcount-error"]
    assert "au moins 7,00" in errors["amount-error"]
    assert "5 erreurs" in visible_text(html)
    # each invalid field says so, and the first one of the form gets the focus
    assert tree.xpath("//*[@aria-invalid='true']/@id") == [
        "siret",
        "email",
        "headcount",
        "deliberation_on",
        "amount",
    ]
    assert tree.xpath("//*[@autofocus]/@id") == ["siret"]
    assert client.get("/api/v1/employers?cdg=81", headers=staff).json["total"] == 0
    # the API refuses what the page refuses, on the same fields
    payload = employer_payload(convention["id"])
    for field, value in (("headcount", -3), ("email", "rh@@mairie-albi")):
        r = client.post("/api/v1/employers", json={**payload, field: value}, headers=staff)
        assert r.status_code == 422 and r.json["error"]["field"] == field
    # corrected, the page creates the employer
    form.update(
        siret=SIRET,
        email="rh@mairie-albi.fr",
        headcount="560",
        deliberation_on="2024-11-15",
        amount="15,00",
    )
    r = client.post("/employeurs/nouveau", data=form)
    assert r.status_code == 302 and r.headers["Location"] == f"/employeurs/{SIRET}"
    # a duplicate SIRET is shown next to the SIRET field
    tree = lxml.html.fromstring(
        client.post("/employeurs/nouveau", data=form).get_data(as_text=True)
    )
    assert "existe déjà" in tree.get_element_by_id("siret-error").text_content()
    assert tree.xpath("//*[@autofocus]/@id") == ["siret"]


# -- confirmation before what cannot be undone ------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_reissue_countersign_and_campaign_need_a_confirmation(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    from service.campaigns.models import Campaign
    from service.kits.models import Kit

    first = issue(client, staff)
    sign_in(app, client, "agent@assureur.fr")
    page = f"/employeurs/{SIRET}"
    html = client.get(page).get_data(as_text=True)
    assert 'id="confirm-reissue"' in html and "cessera de fonctionner" in html
    token = csrf(client, page)
    r = client.post(f"{page}/kit", data={"csrf_token": token})
    assert r.status_code == 302
    after = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Cochez la case de confirmation" in after
    assert lxml.html.fromstring(after).xpath("//*[@autofocus]/@id") == ["confirm-reissue"]
    with app.app_context():
        assert db.session.query(Kit).count() == 1
    r = client.post(f"{page}/kit", data={"csrf_token": token, "confirmation": "oui"})
    assert r.status_code == 200 and 'id="access-code"' in r.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Kit, first["id"]).status == "superseded"

    r = client.post(f"/kits/{first['id'] + 1}/contreseing", data={"csrf_token": token})
    assert "Cochez la case" in client.get(r.headers["Location"]).get_data(as_text=True)

    # an employer without a kit: the campaign has something to issue (else no box to tick)
    other = employer_payload(employer["convention_id"], siret=OTHER, name="Aguts")
    assert client.post("/api/v1/employers", json=other, headers=staff).status_code == 201
    record_prerequisites(client.application, OTHER)
    r = client.post("/lots", data={"cdg": "81", "csrf_token": token})
    assert r.status_code == 302
    assert "Cochez la case" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="confirm-campaign"' in client.get("/").get_data(as_text=True)
    with app.app_context():
        assert db.session.query(Campaign).count() == 0


# -- cancellation ---------------------------------------------------------------------------


def test_cancelling_a_kit_voids_its_access_code_and_is_audited(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    headers = employer_token(client, kit["access_code"])
    url = f"/api/v1/kits/{kit['id']}/cancel"
    assert_error(client.post(url, json={"reason": "  "}, headers=staff), 422, "invalid_field")
    assert client.post(url, json={"reason": "x"}, headers=headers).status_code == 403
    r = client.post(url, json={"reason": "Convention erronée"}, headers=staff)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "cancelled" and r.json["cancel_reason"] == "Convention erronée"
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "cancelled"
    assert_error(client.post(url, json={"reason": "encore"}, headers=staff), 409, "kit_not_open")
    r = client.post(
        "/api/v1/portal/session", json={"siret": SIRET, "access_code": kit["access_code"]}
    )
    assert_error(r, 401, "kit_cancelled")
    r = upload(client, headers, kit, PIECES[0], b"%PDF-1.7\n")
    assert r.status_code in (409, 422)
    cancelled = [e for e in events(app, kit["id"]) if e[0] == "kit_cancelled"]
    assert cancelled == [
        (
            "kit_cancelled",
            "staff:production@assureur.fr",
            {"reference": kit["reference"], "reason": "Convention erronée"},
            None,
        )
    ]
    assert client.get("/api/v1/employers/" + SIRET, headers=staff).status_code == 200
    # a new kit can be issued after the cancellation, without a confirmation
    assert issue(client, staff)["status"] == "issued"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_staff_cancel_a_kit_from_the_employer_page_with_a_reason(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    sign_in(app, client, "agent@assureur.fr")
    page = f"/employeurs/{SIRET}"
    token = csrf(client, page)
    r = client.post(
        f"/kits/{kit['id']}/annulation", data={"csrf_token": token, "reason": "Doublon"}
    )
    assert "Cochez la case" in client.get(r.headers["Location"]).get_data(as_text=True)
    r = client.post(
        f"/kits/{kit['id']}/annulation",
        data={"csrf_token": token, "confirmation": "oui", "reason": ""},
    )
    assert "motif" in client.get(r.headers["Location"]).get_data(as_text=True)
    r = client.post(
        f"/kits/{kit['id']}/annulation",
        data={"csrf_token": token, "confirmation": "oui", "reason": "Doublon de kit"},
    )
    text = visible_text(client.get(r.headers["Location"]).get_data(as_text=True))
    assert "Kit annulé" in text and "Motif : Doublon de kit" in text and "Annulé" in text
    assert "Annuler ce kit" not in text
    journal = visible_text(client.get(f"/kits/{kit['id']}/journal").get_data(as_text=True))
    assert "Kit annulé" in journal and "Doublon de kit" in journal
    assert "gestionnaire agent@assureur.fr" in journal


# -- the audit trail: downloads, CSV ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_download_is_recorded_from_the_portal_the_pages_and_the_api(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    assert client.get(f"/api/v1/kits/{kit['id']}/kit.zip", headers=staff).status_code == 200
    assert portal_sign_in(client, kit["access_code"]).status_code == 302
    html = client.get("/portail/kit").get_data(as_text=True)
    assert "/portail/kit.zip" in html and "/portail/documents/special-conditions.docx" in html
    for path, mimetype in (
        ("/portail/kit.zip", "application/zip"),
        ("/portail/documents/special-conditions.docx", "wordprocessingml"),
        ("/portail/documents/information-notice.pdf", "application/pdf"),
        ("/portail/documents/kit-complet.pdf", "application/pdf"),
    ):
        r = client.get(path)
        assert r.status_code == 200 and mimetype in r.headers["Content-Type"], path
        assert r.data and r.close() is None  # streamed: read it through, end its context
    assert client.get("/portail/documents/information-notice.docx").status_code == 404
    client.post("/portail/deconnexion", data={"csrf_token": csrf(client, "/portail/kit")})
    sign_in(app, client, "agent@assureur.fr")
    assert client.get(f"/kits/{kit['id']}/documents/access-letter.pdf").status_code == 200

    downloads = [e for e in events(app, kit["id"]) if e[0] == "downloaded"]
    employer_actor = f"employer:{SIRET}"
    assert [(a, d["file"]) for _, a, d, _ in downloads] == [
        ("staff:production@assureur.fr", "kit.zip"),
        (employer_actor, "kit.zip"),
        (employer_actor, "special-conditions.docx"),
        (employer_actor, "information-notice.pdf"),
        (employer_actor, "bundle.pdf"),
        ("staff:agent@assureur.fr", "access-letter.pdf"),
    ]
    notice = next(d for d in kit["documents"] if d["kind"] == "information-notice")
    assert downloads[3][3] == notice["sha256"] and all(sha for *_, sha in downloads)
    journal = visible_text(client.get(f"/kits/{kit['id']}/journal").get_data(as_text=True))
    assert "Téléchargement" in journal and "Notice d'information (PDF)" in journal
    assert f"la collectivité (SIRET {formatting.siret(SIRET)})" in journal


@pytest.mark.parametrize("backend", ["sqlite"])
def test_audit_trail_csv_is_french_and_neutralised(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    reason = '=HYPERLINK("http://evil.example";"clic")'
    assert (
        client.post(
            f"/api/v1/kits/{kit['id']}/cancel", json={"reason": reason}, headers=staff
        ).status_code
        == 200
    )
    sign_in(app, client, "suivi@cdg81.fr", role="cdg", cdg="81")
    r = client.get(f"/kits/{kit['id']}/journal.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.headers["Content-Disposition"].endswith(f'filename="journal-{kit["reference"]}.csv"')
    assert r.data.startswith("\ufeffDate et heure (heure de Paris);".encode())
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:6] == [
        "Date et heure (heure de Paris)",
        "Événement",
        "Document",
        "Décision",
        "Motif ou précision",
        "Par",
    ]
    by_event = {row[1]: row for row in rows[1:]}
    assert set(by_event) >= {"Kit émis", "Kit annulé"}
    assert by_event["Kit annulé"][4] == "'" + reason
    assert by_event["Kit annulé"][5] == "gestionnaire production@assureur.fr"
    assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", by_event["Kit émis"][0])
    assert codes_in(r.data.decode("utf-8-sig")) == []
    # a CDG never reads another CDG's trail
    client.post("/deconnexion", data={"csrf_token": csrf(client, "/cdg")})
    cdg31 = {"code": "31", "name": "Centre de gestion de la Haute-Garonne", "email": "a@cdg31.fr"}
    assert client.post("/api/v1/cdgs", json=cdg31, headers=staff).status_code == 201
    sign_in(app, client, "suivi@cdg31.fr", role="cdg", cdg="31")
    assert client.get(f"/kits/{kit['id']}/journal.csv").status_code == 404


def test_audit_times_are_paris_time() -> None:
    from datetime import datetime

    assert labels.when(datetime(2026, 1, 15, 13, 49)) == "15/01/2026 à 14 h 49"  # UTC+1
    assert labels.when(datetime(2026, 7, 15, 12, 49)) == "15/07/2026 à 14 h 49"  # UTC+2
    assert labels.day(datetime(2026, 12, 31, 23, 30)) == "01/01/2027"
    assert labels.actor("staff:a@b.fr") == "gestionnaire a@b.fr"
    assert labels.actor("system") == "le service"
    assert labels.event("unheard_of") == "Autre événement enregistré"


# -- the simulator and amounts as people type them --------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("gross", ["1 500", "1 500,00", "1\u00a0500,00", "1\u202f500", "1500.00"])
def test_simulator_accepts_grouped_amounts(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any], gross: str
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    html = client.get(
        "/simulateur",
        query_string={"convention": convention["id"], "gross": gross, "contribution": "15,00"},
    ).get_data(as_text=True)
    tree = lxml.html.fromstring(html)
    assert tree.get_element_by_id("premium").text_content().strip() == "34,50\u00a0€"
    assert tree.get_element_by_id("share").text_content().strip() == "19,50\u00a0€"
    r = client.get(
        f"/api/v1/conventions/{convention['id']}/simulation",
        query_string={"gross": gross, "contribution": "15.00"},
        headers=staff,
    )
    assert r.status_code == 200 and r.json["premium"] == "34.50"


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("gross", ["1 50", "15 00,00", "1,500.00", "12 3456"])
def test_simulator_refuses_misgrouped_amounts(
    app: Flask, client: FlaskClient, convention: dict[str, Any], gross: str
) -> None:
    sign_in(app, client, "agent@assureur.fr")
    html = client.get(
        "/simulateur", query_string={"convention": convention["id"], "gross": gross}
    ).get_data(as_text=True)
    assert "Montant illisible" in html and 'id="premium"' not in html


# -- phone width -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_staff_pages_have_no_sideways_scroll_at_390px(
    app: Flask,
    live: str,  # noqa: F811
    browser: Any,  # noqa: F811
    staff: dict[str, str],
    employer: dict[str, Any],
) -> None:
    from service.accounts.auth import create_user

    kit = issue(app.test_client(), staff)
    with app.app_context():
        create_user(email="agent@assureur.fr", role="staff", password="un long mot de passe")
        db.session.commit()
    context = browser.new_context(viewport={"width": 390, "height": 800}, locale="fr-FR")
    page = context.new_page()
    page.goto(live + "/connexion")
    page.fill("#email", "agent@assureur.fr")
    page.fill("#password", "un long mot de passe")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Tableau de bord')")
    widths = {}
    for path in (
        "/",
        "/employeurs/nouveau",
        f"/employeurs/{SIRET}",
        f"/kits/{kit['id']}/journal",
        "/revue",
        "/simulateur?gross=1500&contribution=15",
        "/cdg",
    ):
        page.goto(live + path)
        widths[path] = page.evaluate("document.scrollingElement.scrollWidth")
    page.goto(live + "/employeurs/nouveau")
    page.click("button:has-text('Créer l')")  # every error shown at once
    widths["/employeurs/nouveau (erreurs)"] = page.evaluate("document.scrollingElement.scrollWidth")
    page.goto(live + f"/employeurs/{SIRET}")
    page.check("#confirm-reissue")
    page.click("button:has-text('Émettre un nouveau kit')")
    page.wait_for_selector("#access-code")
    widths["kit émis"] = page.evaluate("document.scrollingElement.scrollWidth")
    context.close()
    assert {p: w for p, w in widths.items() if w > 390} == {}
