"""The subscription request (DSC): submitted with its files by a collectivité, confirmed by the
contact's e-mail link, seen by staff only then, accepted (the employer and its prerequisites
recorded, then a kit issued) or refused with the reason e-mailed; hostile files and the
throttle refused with their codes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta
from typing import Any

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.audit.models import AuditEvent
from service.backends import document_store
from service.extensions import db
from service.reference.models import Employer
from service.subscriptions.domain import prerequisite_history, prerequisites_of
from service.subscriptions.models import SubscriptionRequest
from service.timeutil import utcnow
from tests.conftest import CORPUS, employer_payload, record_prerequisites
from tests.pdftools import pdf_text
from tests.test_french_wording import mails

PDF = (CORPUS / "pairs" / "valid_modification" / "unsigned.pdf").read_bytes()
OTHER_PDF = (CORPUS / "pairs" / "poppler" / "unsigned.pdf").read_bytes()
SIRET = "21810004800014"
CONTACT = "secretariat@mairie-albi.fr"


def xlsx(*, macro: bool = False, external: bool = False) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["élément", "montant"])
    sheet.append(["IFSE", 250])
    out = io.BytesIO()
    book.save(out)
    if not (macro or external):
        return out.getvalue()
    src = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    dst_bytes = io.BytesIO()
    with zipfile.ZipFile(dst_bytes, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        if macro:
            dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 macro")
        if external:
            dst.writestr("xl/externalLinks/externalLink1.xml", b"<externalLink/>")
    return dst_bytes.getvalue()


def request_data(convention_id: int, **overrides: Any) -> dict[str, Any]:
    data = employer_payload(convention_id)
    data.update({"contact_name": "Claire Martin", "contact_email": CONTACT})
    data.update(overrides)
    return data


def submit(
    client: FlaskClient,
    convention_id: int,
    *,
    files: dict[str, tuple[bytes, str]] | None = None,
    code: str = "81",
    address: str = "192.0.2.10",
    **overrides: Any,
) -> Any:
    chosen = {
        "deliberation": (PDF, "deliberation.pdf"),
        "cst_opinion": (OTHER_PDF, "avis-cst.pdf"),
        "premium_elements": (xlsx(), "elements.xlsx"),
    }
    chosen.update(files or {})
    body: dict[str, Any] = {"data": json.dumps(request_data(convention_id, **overrides))}
    for field, (data, name) in chosen.items():
        body[field] = (io.BytesIO(data), name)
    return client.post(
        f"/api/v1/cdgs/{code}/subscriptions",
        data=body,
        content_type="multipart/form-data",
        environ_base={"REMOTE_ADDR": address},
    )


def link_token(app: Flask) -> str:
    found = [m for m in mails(app) if "Confirmez votre demande" in str(m["Subject"])]
    assert found, "no confirmation e-mail"
    body = found[-1].get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"/cdg/81/souscription/confirmation\?jeton=([A-Za-z0-9_-]+)", body)
    assert match is not None, body
    return match.group(1)


def stored_keys(app: Flask, prefix: str) -> list[str]:
    with app.app_context():
        return [info.key for info in document_store().list(prefix)]


def test_subscription_confirmed_accepted_then_kit_issued(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    r = submit(client, convention["id"])
    assert r.status_code == 202, r.json
    request_id = r.json["id"]
    # nothing reaches staff before the contact confirms its address
    assert client.get("/api/v1/subscriptions", headers=staff).json["items"] == []
    assert client.get(f"/api/v1/subscriptions/{request_id}", headers=staff).status_code == 404
    with app.app_context():
        row = db.session.get(SubscriptionRequest, request_id)
        assert row is not None and row.status == "unconfirmed"
        token = link_token(app)
        assert token not in json.dumps(row.data) and row.token_hash != token  # only its hash
    r = client.post("/api/v1/subscriptions/confirm", json={"token": token})
    assert r.status_code == 200 and r.json["status"] == "submitted"

    listed = client.get("/api/v1/subscriptions?status=submitted", headers=staff).json["items"]
    assert [i["id"] for i in listed] == [request_id]
    item = listed[0]
    assert item["siret"] == SIRET and item["contact_email"] == CONTACT
    assert {f["field"]: f["format"] for f in item["files"]} == {
        "deliberation": "pdf",
        "cst_opinion": "pdf",
        "premium_elements": "xlsx",
    }
    deliberation = next(f for f in item["files"] if f["field"] == "deliberation")
    got = client.get(deliberation["url"], headers=staff)
    assert got.status_code == 200 and got.data == PDF

    # no employer yet: its kit cannot be issued
    assert client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).status_code == 404
    r = client.post(
        f"/api/v1/subscriptions/{request_id}/decision", json={"accept": True}, headers=staff
    )
    assert r.status_code == 200, r.json
    assert r.json["status"] == "accepted" and r.json["employer_siret"] == SIRET
    again = client.post(
        f"/api/v1/subscriptions/{request_id}/decision", json={"accept": True}, headers=staff
    )
    assert again.status_code == 409 and again.json["error"]["code"] == "already_decided"

    employer = client.get(f"/api/v1/employers/{SIRET}", headers=staff).json
    assert employer["name"] == "Albi" and employer["deliberation_on"] == "2024-11-15"
    prerequisites = client.get(f"/api/v1/employers/{SIRET}/prerequisites", headers=staff).json
    assert prerequisites["complete"] is True and prerequisites["missing"] == []
    kinds = {i["kind"]: i for i in prerequisites["items"]}
    assert set(kinds) == {
        "subscription-request",
        "deliberation",
        "cst-opinion",
        "premium-elements-list",
    }
    assert client.get(kinds["deliberation"]["file_url"], headers=staff).data == PDF
    cst = client.get(kinds["cst-opinion"]["file_url"], headers=staff).data
    assert hashlib.sha256(cst).hexdigest() == hashlib.sha256(OTHER_PDF).hexdigest()
    dsc = client.get(kinds["subscription-request"]["file_url"], headers=staff)
    assert dsc.status_code == 200 and dsc.data.startswith(b"%PDF-")
    text = " ".join(" ".join(pdf_text(dsc.data)).split())
    assert "Demande de souscription collectivité" in text and "Claire Martin" in text
    assert "15 novembre 2024" in text and "15,00 €" in text

    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201, r.json

    accepted = [m for m in mails(app) if "acceptée" in str(m["Subject"])]
    assert accepted and accepted[-1]["To"] == CONTACT
    with app.app_context():
        events = [
            e.event
            for e in db.session.scalars(
                select(AuditEvent).where(AuditEvent.siret == SIRET).order_by(AuditEvent.id)
            )
        ]
    steps = ["subscription_submitted", "subscription_confirmed", "subscription_accepted"]
    assert [e for e in events if e in steps] == steps
    assert events.count("prerequisite_recorded") == 4


def test_subscription_refused_with_the_reason_emailed(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    request_id = submit(client, convention["id"]).json["id"]
    assert (
        client.post("/api/v1/subscriptions/confirm", json={"token": link_token(app)}).status_code
        == 200
    )
    url = f"/api/v1/subscriptions/{request_id}/decision"
    missing = client.post(url, json={"accept": False}, headers=staff)
    assert missing.status_code == 422 and missing.json["error"]["code"] == "reason_required"
    reason = "La délibération jointe est celle d'une autre collectivité."
    r = client.post(url, json={"accept": False, "reason": reason}, headers=staff)
    assert r.status_code == 200 and r.json["status"] == "refused"
    refused = [m for m in mails(app) if "pas été acceptée" in str(m["Subject"])]
    assert refused and refused[-1]["To"] == CONTACT
    assert reason in refused[-1].get_body(preferencelist=("plain",)).get_content()
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).status_code == 404
    listed = client.get("/api/v1/subscriptions?status=refused", headers=staff).json["items"]
    assert [i["decision_reason"] for i in listed] == [reason]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_link_single_use_and_expiring(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    submit(client, convention["id"])
    token = link_token(app)
    assert client.post("/api/v1/subscriptions/confirm", json={"token": token}).status_code == 200
    replay = client.post("/api/v1/subscriptions/confirm", json={"token": token})
    assert replay.status_code == 409 and replay.json["error"]["code"] == "link_used"
    unknown = client.post("/api/v1/subscriptions/confirm", json={"token": "x" * 43})
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_link"

    second = submit(client, convention["id"], contact_email="dgs@mairie-albi.fr").json["id"]
    late = link_token(app)
    with app.app_context():
        row = db.session.get(SubscriptionRequest, second)
        assert row is not None
        row.token_expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    expired = client.post("/api/v1/subscriptions/confirm", json={"token": late})
    assert expired.status_code == 410 and expired.json["error"]["code"] == "link_expired"
    assert "expiré" in expired.json["error"]["message"]
    ids = [i["id"] for i in client.get("/api/v1/subscriptions", headers=staff).json["items"]]
    assert second not in ids


HOSTILE = [
    ("deliberation", "encrypted.pdf", "encrypted_pdf"),
    ("cst_opinion", "pdfjs-js-authors.pdf", "active_content"),
    ("deliberation", "pdfjs-autoprint.pdf", "active_content"),
    ("deliberation", "pyhanko-circular-page-tree.pdf", "malformed_pdf"),
    ("deliberation", None, "not_a_pdf"),
    ("premium_elements", "macro", "active_content"),
    ("premium_elements", "external", "external_links"),
    ("premium_elements", "latin1", "unsupported_format"),
]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(("field", "source", "code"), HOSTILE)
def test_subscription_hostile_file_refused_nothing_kept(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    field: str,
    source: str | None,
    code: str,
) -> None:
    if source == "macro":
        data = xlsx(macro=True)
    elif source == "external":
        data = xlsx(external=True)
    elif source == "latin1":
        data = "élément;montant\nIFSE;250\n".encode("latin-1")
    elif source is None:
        data = b"Ceci n'est pas un PDF, juste du texte.\n"
    else:
        data = (CORPUS / "pdf" / source).read_bytes()
    r = submit(client, convention["id"], files={field: (data, "piece")})
    assert r.status_code == 422, r.json
    assert r.json["error"]["code"] == code and r.json["error"]["field"] == field
    assert r.json["error"]["message"][0].isupper()
    with app.app_context():
        assert db.session.scalars(select(SubscriptionRequest)).all() == []
    assert stored_keys(app, "subscriptions/") == []
    assert stored_keys(app, "quarantine/") == []
    assert not [m for m in mails(app) if "Confirmez" in str(m["Subject"])]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_csv_list_accepted(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    csv = "élément;montant\nIFSE;250,00\n".encode()
    r = submit(client, convention["id"], files={"premium_elements": (csv, "liste.csv")})
    assert r.status_code == 202, r.json
    assert stored_keys(app, "quarantine/") == []
    assert any(k.endswith("premium_elements.csv") for k in stored_keys(app, "subscriptions/"))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_bad_input_answers_in_french(
    client: FlaskClient, convention: dict[str, Any]
) -> None:
    unknown = submit(client, convention["id"], code="99", cdg="99")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_cdg"
    other = submit(client, convention["id"], cdg="82")
    assert other.status_code == 422 and other.json["error"]["code"] == "cdg_mismatch"
    dates = submit(client, convention["id"], deliberation_on="2024-09-01")
    assert dates.json["error"]["code"] == "deliberation_before_cst_opinion"
    no_file = client.post(
        "/api/v1/cdgs/81/subscriptions",
        data={"data": json.dumps(request_data(convention["id"]))},
        content_type="multipart/form-data",
        environ_base={"REMOTE_ADDR": "192.0.2.99"},
    )
    assert no_file.status_code == 422 and no_file.json["error"]["code"] == "file_missing"
    broken = client.post(
        "/api/v1/cdgs/81/subscriptions",
        data={"data": "{pas du json"},
        content_type="multipart/form-data",
        environ_base={"REMOTE_ADDR": "192.0.2.98"},
    )
    assert broken.status_code == 422 and broken.json["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_throttled_per_address_and_per_ip(
    client: FlaskClient, convention: dict[str, Any]
) -> None:
    for _ in range(3):
        assert submit(client, convention["id"], address="192.0.2.20").status_code == 202
    r = submit(client, convention["id"], address="192.0.2.21")  # same e-mail, another address
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json["error"]["code"] == "too_many_attempts"
    # another e-mail from the first address goes on until the address's own limit
    codes = [
        submit(
            client, convention["id"], address="192.0.2.20", contact_email=f"c{i}@mairie.fr"
        ).status_code
        for i in range(8)
    ]
    assert codes == [202] * 7 + [429]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_refused_tries_do_not_lock_out_the_contact(
    client: FlaskClient, convention: dict[str, Any]
) -> None:
    # a stranger sends bad requests in the contact's name from several addresses
    for i in range(5):
        bad = submit(client, convention["id"], address=f"192.0.2.{40 + i}", cdg="82")
        assert bad.status_code == 422
    # none was stored: the contact's own request still goes through
    assert submit(client, convention["id"], address="192.0.2.60").status_code == 202
    # failures still count per client address
    codes = [
        submit(client, convention["id"], address="192.0.2.61", cdg="82").status_code
        for _ in range(11)
    ]
    assert codes == [422] * 10 + [429]


@pytest.mark.parametrize("backend", ["postgres"])
def test_subscription_accept_updates_an_existing_employer(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    r = client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    assert r.status_code == 201
    missing = client.get(f"/api/v1/employers/{SIRET}/prerequisites", headers=staff).json
    assert missing["complete"] is False and len(missing["missing"]) == 4
    request_id = submit(client, convention["id"], headcount=600, name="Ville d'Albi").json["id"]
    assert (
        client.post("/api/v1/subscriptions/confirm", json={"token": link_token(app)}).status_code
        == 200
    )
    r = client.post(
        f"/api/v1/subscriptions/{request_id}/decision", json={"accept": True}, headers=staff
    )
    assert r.status_code == 200, r.json
    employer = client.get(f"/api/v1/employers/{SIRET}", headers=staff).json
    assert (employer["headcount"], employer["name"]) == (600, "Ville d'Albi")
    done = client.get(f"/api/v1/employers/{SIRET}/prerequisites", headers=staff).json
    assert done["complete"] is True


def test_subscription_update_keeps_contact_details_and_waits_for_the_open_kit(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    from tests.test_pages import sign_in

    r = client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    assert r.status_code == 201
    before = r.json
    record_prerequisites(app, SIRET)
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert kit.status_code == 201, kit.json
    request_id = submit(
        client,
        convention["id"],
        headcount=600,
        email="pirate@exemple.fr",
        address="1 rue Ailleurs, 75001 Paris",
    ).json["id"]
    assert (
        client.post("/api/v1/subscriptions/confirm", json={"token": link_token(app)}).status_code
        == 200
    )
    sign_in(app, client, "gestion@cdg81.fr")
    page = client.get(f"/souscriptions/{request_id}").get_data(as_text=True)
    assert "Mise à jour d'un employeur existant" in page
    assert "pirate@exemple.fr" in page and before["email"] in page  # kept, said so
    assert "kit en attente de signature" in page
    refused = client.post(
        f"/api/v1/subscriptions/{request_id}/decision", json={"accept": True}, headers=staff
    )
    assert refused.status_code == 409 and refused.json["error"]["code"] == "employer_has_open_kit"
    assert "kit" in refused.json["error"]["message"]
    unchanged = client.get(f"/api/v1/employers/{SIRET}", headers=staff).json
    assert unchanged["headcount"] == before["headcount"]  # nothing half-written
    cancel = client.post(
        f"/api/v1/kits/{kit.json['id']}/cancel", json={"reason": "Erreur"}, headers=staff
    )
    assert cancel.status_code == 200, cancel.json
    r = client.post(
        f"/api/v1/subscriptions/{request_id}/decision", json={"accept": True}, headers=staff
    )
    assert r.status_code == 200, r.json
    after = client.get(f"/api/v1/employers/{SIRET}", headers=staff).json
    assert after["headcount"] == 600
    assert (after["email"], after["address"]) == (before["email"], before["address"])
    # the papers received before stay as history, the request's are in force
    with app.app_context():
        employer = db.session.scalars(select(Employer).where(Employer.siret == SIRET)).one()
        history = prerequisite_history(employer, "deliberation")
        assert [p.source for p in history] == ["request", "demo"]
        assert prerequisites_of(employer).complete
        assert {p.source for p in prerequisites_of(employer).items} == {"request"}
    got = client.get(f"/api/v1/employers/{SIRET}/prerequisites/deliberation/file", headers=staff)
    assert got.status_code == 200 and got.data == PDF


@pytest.mark.parametrize("backend", ["sqlite"])
def test_subscription_pages_form_link_and_staff_decision(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    from tests.test_pages import csrf, sign_in

    page = client.get("/cdg/81/souscription").get_data(as_text=True)
    assert (
        "Demande de souscription à la prévoyance" in page
        and 'enctype="multipart/form-data"' in page
    )
    form = {
        "csrf_token": csrf(client, "/cdg/81/souscription"),
        "siret": SIRET,
        "name": "Albi",
        "kind": "commune",
        "address": "16 rue de l'Hôtel de Ville, 81000 Albi",
        "email": "rh@mairie-albi.fr",
        "headcount": "560",
        "convention_id": str(convention["id"]),
        "cst_opinion_on": "2024-10-01",
        "deliberation_on": "2024-11-15",
        "mode": "flat",
        "amount": "15,00",
        "contact_name": "Claire Martin",
        "contact_email": CONTACT,
    }
    # a hostile file: the form comes back with the message next to its field, nothing kept
    bad = client.post(
        "/cdg/81/souscription",
        data={
            **form,
            "deliberation": (io.BytesIO((CORPUS / "pdf" / "encrypted.pdf").read_bytes()), "d.pdf"),
            "cst_opinion": (io.BytesIO(PDF), "c.pdf"),
            "premium_elements": (io.BytesIO(xlsx()), "l.xlsx"),
        },
        content_type="multipart/form-data",
    )
    assert bad.status_code == 200
    assert "chiffré ou protégé par mot de passe" in bad.get_data(as_text=True)
    assert stored_keys(app, "subscriptions/") == []
    r = client.post(
        "/cdg/81/souscription",
        data={
            **form,
            "deliberation": (io.BytesIO(PDF), "d.pdf"),
            "cst_opinion": (io.BytesIO(OTHER_PDF), "c.pdf"),
            "premium_elements": (io.BytesIO(xlsx()), "l.xlsx"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 302 and r.headers["Location"] == "/cdg/81/souscription/envoyee"
    assert "Vérifiez votre messagerie" in client.get(r.headers["Location"]).get_data(as_text=True)
    token = link_token(app)
    url = f"/cdg/81/souscription/confirmation?jeton={token}"
    landing = client.get(url).get_data(as_text=True)
    assert "Confirmer et transmettre la demande" in landing
    with app.app_context():  # opening the link confirms nothing (mail scanners open links)
        assert db.session.scalars(select(SubscriptionRequest)).one().status == "unconfirmed"
    done = client.post(url, data={"csrf_token": csrf(client, url), "jeton": token})
    assert "votre demande est transmise au gestionnaire" in done.get_data(as_text=True)
    again = client.get(url).get_data(as_text=True)
    assert "Ce lien a déjà servi" in again

    sign_in(app, client, "chef@assureur.fr")
    listing = client.get("/souscriptions").get_data(as_text=True)
    assert "Albi" in listing and "Claire Martin" in listing
    with app.app_context():
        request_id = db.session.scalars(select(SubscriptionRequest)).one().id
    detail = client.get(f"/souscriptions/{request_id}")
    assert detail.status_code == 200, detail.get_data(as_text=True)[:2000]
    text = detail.get_data(as_text=True)
    assert "15,00\u00a0€ par mois" in text and "15 novembre 2024" in text
    image = client.get(f"/souscriptions/{request_id}/fichiers/deliberation/pages/1.png")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    assert (
        client.get(f"/souscriptions/{request_id}/fichiers/deliberation/pages/99.png").status_code
        == 404
    )
    download = client.get(f"/souscriptions/{request_id}/fichiers/premium_elements")
    assert download.status_code == 200 and download.data[:2] == b"PK"
    token = csrf(client, f"/souscriptions/{request_id}")
    refused = client.post(
        f"/souscriptions/{request_id}", data={"csrf_token": token, "decision": "refuse"}
    )
    assert "Indiquez le motif du refus" in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    r = client.post(
        f"/souscriptions/{request_id}", data={"csrf_token": token, "decision": "accept"}
    )
    assert r.status_code == 302 and r.headers["Location"] == f"/employeurs/{SIRET}"
    employer_page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "demande de souscription en ligne" in employer_page
