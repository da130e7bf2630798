"""The agent's side (issue 11): the e-mailed activation link (single use, expiry), the password
policy, throttled sign-in, the agent's memberships and certificate (read back with pdftotext and
pikepdf), beneficiary designations and their history, scoping between agents and employers,
the `/adherent` pages and the whole journey in Chromium at phone width.

Memberships are written as rows here (amounts computed by hand), then confirmed through
`service.agents.notify.membership_confirmed`, as the employer's registration does."""

from __future__ import annotations

import email
import io
import re
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from email import policy
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.agents.models import (
    ActivationLink,
    AgentAccount,
    BeneficiaryDesignation,
    Membership,
)
from service.agents.notify import membership_confirmed
from service.audit.models import AuditEvent
from service.config import settings
from service.extensions import db
from service.reference.models import Convention, Employer
from service.timeutil import utcnow
from tests.conftest import auth, employer_payload, record_prerequisites, run_jobs
from tests.pdftools import every_font_embedded
from tests.test_e2e import Session, browser, live  # noqa: F401  (fixtures)
from tests.test_pages import csrf
from tests.test_pages_people import codes_in, visible_text
from tests.test_reference_api import assert_error
from tests.test_schemathesis import _operation_test

SIRET = "21810004800014"
OTHER_SIRET = "21810001400016"
PASSWORD = "un mot de passe solide"
CHROMIUM_ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "agents"


# -- helpers ---------------------------------------------------------------------------------


def add_membership(
    app: Flask,
    siret: str,
    *,
    email_address: str = "marie.durand@example.fr",
    first_name: str = "Marie",
    last_name: str = "Durand",
    options: tuple[str, ...] = ("deces",),
    individual: bool = False,
    number: int = 1,
) -> int:
    """One confirmed membership: base 1 500,00 € (TBI 1 400 + NBI 100); 2,30 % + options;
    the employer's flat 15,00 € contribution."""
    rates = {"deces": Decimal("0.30"), "perte_retraite": Decimal("0.45")}
    base = Decimal("1500.00")
    rate = Decimal("2.30") + sum((rates[o] for o in options), Decimal(0))
    premium = (base * rate / 100).quantize(Decimal("0.01"))
    contribution = min(Decimal("15.00"), premium)
    with app.app_context():
        employer = db.session.scalar(select(Employer).where(Employer.siret == siret))
        assert employer is not None
        membership = Membership(
            reference=f"ADH-81-{number:06d}",
            employer_id=employer.id,
            convention_id=employer.convention_id,
            last_name=last_name,
            first_name=first_name,
            birth_date=date(1985, 6, 14),
            person_key=f"{last_name}|{first_name}|1985-06-14".lower(),
            email=email_address,
            status="titulaire",
            category="B",
            has_individual_contract=individual,
            base={"tbi": "1400.00", "nbi": "100.00", "ri": "0.00", "cti": "0.00"},
            options=list(options),
            joins_on=date(2025, 3, 1),
            base_amount=base,
            premium=premium,
            employer_contribution=contribution,
            employee_share=premium - contribution,
            state="invited",
            created_by=f"employer:{siret}",
        )
        db.session.add(membership)
        db.session.flush()
        membership_confirmed(membership)
        db.session.commit()
        return membership.id


def mails(app: Flask, to: str) -> list[email.message.EmailMessage]:
    run_jobs(app)
    with app.app_context():
        outbox = Path(settings().mail_url.removeprefix("file://"))
    found = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime)
    ]
    return [m for m in found if m["To"] == to]


def mailed_link(app: Flask, to: str = "marie.durand@example.fr") -> str:
    """The activation link of the newest e-mail sent to `to`: the path and its query."""
    body = mails(app, to)[-1].get_body(("plain",)).get_content()
    match = re.search(r"http://portail\.test\.local(/adherent/activation\?jeton=[\w-]+)", body)
    assert match is not None, body
    return match.group(1)


def token_of(link: str) -> str:
    return link.split("jeton=", 1)[1]


def activate(client: FlaskClient, token: str, password: str = PASSWORD) -> Any:
    return client.post("/api/v1/agents/activate", json={"token": token, "password": password})


def agent_token(client: FlaskClient, address: str = "marie.durand@example.fr") -> dict[str, str]:
    r = client.post("/api/v1/agents/session", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200, r.json
    return auth(r.json["token"])


def page_sign_in(client: FlaskClient, address: str = "marie.durand@example.fr") -> None:
    r = client.post(
        "/adherent/connexion",
        data={
            "email": address,
            "password": PASSWORD,
            "csrf_token": csrf(client, "/adherent/connexion"),
        },
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/adherent"), r.status_code


def pdftotext(data: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pdf"
        path.write_bytes(data)
        out = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True
        ).stdout
    return re.sub(r"[\s\u00a0\u202f]+", " ", out)


@pytest.fixture
def other_employer(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> Any:
    payload = employer_payload(
        employer["convention_id"],
        siret=OTHER_SIRET,
        name="Aguts",
        email="mairie@aguts.fr",
        address="Le village, 81470 Aguts",
        headcount=4,
    )
    r = client.post("/api/v1/employers", json=payload, headers=staff)
    assert r.status_code == 201, r.json
    return r.json


# -- activation ------------------------------------------------------------------------------


def test_activation_link_single_use_then_replay_refused(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    message = mails(app, "marie.durand@example.fr")[-1]
    assert "adhésion" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "Bonjour Marie Durand" in body and "la commune d'Albi" in body
    token = token_of(mailed_link(app))
    with app.app_context():  # only the token's SHA-256 is kept
        link = db.session.scalar(select(ActivationLink))
        assert link is not None and token not in link.token_hash

    r = activate(client, token)
    assert r.status_code == 201, r.json
    assert r.json["created"] is True and r.json["membership"]["state"] == "active"
    assert_error(activate(client, token), 409, "activation_link_used")
    assert_error(activate(client, token, "un autre mot de passe"), 409, "activation_link_used")
    with app.app_context():
        reasons = db.session.scalars(
            select(AuditEvent.details).where(AuditEvent.event == "agent_activation_refused")
        ).all()
        assert [r["reason"] for r in reasons] == ["lien déjà utilisé"] * 2
    me = client.get("/api/v1/agents/me", headers=agent_token(client))
    assert [m["reference"] for m in me.json["memberships"]] == ["ADH-81-000001"]
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event)).all()
        assert "agent_account_created" in events and "agent_session" in events


@pytest.mark.parametrize("backend", ["postgres"])
def test_activation_same_link_used_twice_at_once_creates_one_account(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    token = token_of(mailed_link(app))
    barrier = threading.Barrier(2)

    def use(password: str) -> int:
        barrier.wait()
        return activate(app.test_client(), token, password).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(use, [PASSWORD, "un autre mot de passe assez long"]))
    assert codes[0] in (200, 201) and codes[1] == 409, codes
    with app.app_context():
        assert len(db.session.scalars(select(AgentAccount)).all()) == 1
        events = db.session.scalars(
            select(AuditEvent.event).where(AuditEvent.event.like("agent_%"))
        ).all()
        assert "agent_membership_attached" not in events
        assert events.count("agent_account_created") == 1


def test_activation_expired_or_unknown_link_refused(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    token = token_of(mailed_link(app))
    with app.app_context():
        link = db.session.scalar(select(ActivationLink))
        assert link is not None
        link.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    assert_error(activate(client, token), 410, "activation_link_expired")
    assert_error(activate(client, token + "x"), 404, "activation_link_unknown")
    page = client.get(f"/adherent/activation?jeton={token}")
    assert page.status_code == 410 and "a expiré" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ActivationLink.used_at)) is None
        refused = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "agent_activation_refused")
        ).all()
        assert [e.details["reason"] for e in refused] == ["lien expiré"]  # not the page view


def test_activation_short_password_refused_and_link_kept(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    token = token_of(mailed_link(app))
    r = activate(client, token, "court")
    assert_error(r, 422, "weak_password", "password")
    assert "12 caractères" in r.json["error"]["message"]
    assert_error(activate(client, token, " " * 14), 422, "weak_password")
    assert activate(client, token).status_code == 201  # the refused attempts used nothing


def test_activation_second_membership_needs_the_accounts_password(
    app: Flask, client: FlaskClient, employer: dict[str, Any], other_employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    add_membership(app, OTHER_SIRET, number=2, options=())
    second_link = mailed_link(app)
    second = token_of(second_link)
    page = client.get(second_link).get_data(as_text=True)
    assert "Un compte existe déjà" in page and 'id="confirmation"' not in page
    assert_error(activate(client, second, "pas le bon mot de passe"), 401, "invalid_credentials")
    r = activate(client, second)
    assert r.status_code == 200 and r.json["created"] is False
    me = client.get("/api/v1/agents/me", headers=agent_token(client)).json
    assert [(m["reference"], m["employer"]["designation"]) for m in me["memberships"]] == [
        ("ADH-81-000001", "La commune d'Albi"),
        ("ADH-81-000002", "La commune d'Aguts"),
    ]
    headers = agent_token(client)
    assert_error(
        client.get("/api/v1/agents/me/beneficiaries", headers=headers),
        422,
        "membership_required",
        "membership",
    )
    assert_error(
        client.get("/api/v1/agents/me/certificate.pdf?membership=abc", headers=headers),
        422,
        "invalid_membership",
        "membership",
    )
    second_id = me["memberships"][1]["id"]
    named = client.get(f"/api/v1/agents/me/beneficiaries?membership={second_id}", headers=headers)
    assert named.json["reference"] == "ADH-81-000002" and named.json["death_cover"] is False
    first = me["memberships"][0]
    assert first["premium_breakdown"] == {
        "base": "1500.00",
        "premium": "39.00",
        "employer_contribution": "15.00",
        "employee_share": "24.00",
    }
    assert first["options"][0]["code"] == "deces" and first["options"][0]["label"] == "Décès"
    with app.app_context():
        assert "agent_membership_attached" in db.session.scalars(select(AuditEvent.event)).all()


# -- sign-in ---------------------------------------------------------------------------------


def test_agent_sign_in_throttled_after_wrong_passwords(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    wrong = {"email": "marie.durand@example.fr", "password": "pas le bon mot de passe"}
    unknown = client.post(
        "/api/v1/agents/session", json={"email": "personne@example.fr", "password": PASSWORD}
    )
    assert_error(unknown, 401, "invalid_credentials")  # the same answer as a wrong password
    for _ in range(5):
        assert_error(client.post("/api/v1/agents/session", json=wrong), 401, "invalid_credentials")
    r = client.post("/api/v1/agents/session", json={**wrong, "password": PASSWORD})
    assert_error(r, 429, "too_many_attempts")
    assert int(r.headers["Retry-After"]) > 0
    # another address is not locked out
    other = client.post(
        "/api/v1/agents/session",
        json={"email": "marie.durand@example.fr", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 200 and other.json["expires_at"].endswith("Z")
    # signing out through the API: the token stops working at once
    headers = auth(other.json["token"])
    assert client.get("/api/v1/agents/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/agents/session", headers=headers).status_code == 204
    assert_error(client.get("/api/v1/agents/me", headers=headers), 401, "invalid_token")


# -- certificate -----------------------------------------------------------------------------


def test_certificate_read_back_with_french_amounts_and_pdfa_markers(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET, individual=True)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    r = client.get("/api/v1/agents/me/certificate.pdf", headers=agent_token(client))
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert "ADH-81-000001" in r.headers["Content-Disposition"]
    CHROMIUM_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (CHROMIUM_ARTIFACTS / "certificat-adhesion.pdf").write_bytes(r.data)
    text = pdftotext(r.data)
    for expected in (
        "Certificat d'adhésion",
        "DURAND Marie",
        "14 juin 1985",
        "Allianz Vie",
        "Collecteam",
        "CDG81-PREV-2025-2030",
        "La commune d'Albi",
        "1er mars 2025",
        "1 500,00 €",
        "39,00 €",
        "15,00 €",
        "24,00 €",
        "Décès (0,30 % de l'assiette)",
        "lettre recommandée",
        "au moins deux mois avant sa date d'échéance",
        "La commune d'Albi ne peut plus participer",
    ):
        assert expected in text, expected
    assert "deces" not in text and "Fonctionnaire titulaire, catégorie B" in text
    with pikepdf.open(io.BytesIO(r.data)) as pdf:
        meta = pdf.open_metadata()
        assert meta.get("pdfaid:part") == "2" and meta.get("pdfaid:conformance") == "B"
        assert pdf.Root.OutputIntents[0].S == "/GTS_PDFA1"
        assert str(pdf.Root.Lang).startswith("fr")
    assert every_font_embedded(r.data) == []
    again = client.get("/api/v1/agents/me/certificate.pdf", headers=agent_token(client))
    assert again.data == r.data  # the same facts, the same bytes (served from the cache)
    assert "contrat collectif à adhésion facultative" in text and "obligatoire" not in text
    # the regime is in the facts (and the cache key): a mandatory convention says so at once
    with app.app_context():
        for convention in db.session.scalars(select(Convention)):
            convention.regime = "mandatory"
        db.session.commit()
    mandatory = client.get("/api/v1/agents/me/certificate.pdf", headers=agent_token(client))
    text = pdftotext(mandatory.data)
    assert "contrat collectif à adhésion obligatoire" in text and "facultative" not in text


def test_certificate_without_individual_contract_has_no_warning(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET, options=("perte_retraite",))
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    r = client.get("/api/v1/agents/me/certificate.pdf", headers=agent_token(client))
    text = pdftotext(r.data)
    assert "Perte de retraite" in text and "41,25 €" in text  # 1 500 × 2,75 %
    assert "lettre recommandée" not in text and "ne peut plus participer" not in text
    assert "Active" in text and "Fin de l'adhésion" not in text
    # a departure changes the facts: a new certificate, never the cached one
    with app.app_context():
        membership = db.session.scalar(select(Membership))
        assert membership is not None
        membership.state, membership.left_on = "left", date(2026, 6, 30)
        db.session.commit()
    after = pdftotext(
        client.get("/api/v1/agents/me/certificate.pdf", headers=agent_token(client)).data
    )
    assert "Fin de l'adhésion 30 juin 2026" in after and "Terminée (départ)" in after


# -- beneficiaries ---------------------------------------------------------------------------


def _put(client: FlaskClient, headers: dict[str, str], body: dict[str, Any], **q: Any) -> Any:
    query = "".join(f"?{k}={v}" for k, v in q.items())
    return client.put(f"/api/v1/agents/me/beneficiaries{query}", json=body, headers=headers)


def _named(*shares: Any) -> dict[str, Any]:
    people = [
        ("Paul Durand", "conjoint", "1984-02-03"),
        ("Léa Durand", "enfant", "2012-09-30"),
        ("Hugo Durand", "enfant", "2015-01-12"),
    ]
    return {
        "clause": "specific",
        "beneficiaries": [
            {"name": n, "relationship": r, "birth_date": b, "share": s}
            for (n, r, b), s in zip(people, shares, strict=False)
        ],
    }


def test_beneficiaries_shares_must_add_up_to_100_with_history_kept(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    headers = agent_token(client)
    assert client.get("/api/v1/agents/me/beneficiaries", headers=headers).json["current"] is None

    assert _put(client, headers, {"clause": "standard"}).status_code == 200
    r = _put(client, headers, _named("60", "40"))
    assert r.status_code == 200, r.json
    refused = _put(client, headers, _named("60", "39.99"))
    assert_error(refused, 422, "shares_not_100", "beneficiaries")
    assert "99,99" in refused.json["error"]["message"]
    r = _put(client, headers, _named("33.34", 33.33, "33,33"))
    assert r.status_code == 200, r.json
    assert [b["share"] for b in r.json["current"]["beneficiaries"]] == ["33.34", "33.33", "33.33"]
    assert r.json["current"]["beneficiaries"][1]["relationship_label"] == "Enfant"
    assert [h["clause"] for h in r.json["history"]] == ["specific", "standard"]
    assert [b["share"] for b in r.json["history"][0]["beneficiaries"]] == ["60.00", "40.00"]

    future = _named("100")
    future["beneficiaries"][0]["birth_date"] = (date.today() + timedelta(days=2)).isoformat()
    assert_error(
        _put(client, headers, future), 422, "birth_date_in_future", "beneficiaries.0.birth_date"
    )
    assert_error(
        _put(client, headers, {**_named("100"), "beneficiaries": []}), 422, "beneficiaries_missing"
    )
    assert_error(_put(client, headers, _named("0", "100")), 422, "invalid_share")
    assert_error(_put(client, headers, _named("50.005", "49.995")), 422, "invalid_share")
    bad_date = _named("100")
    bad_date["beneficiaries"][0]["birth_date"] = "2020-02-30"
    assert_error(_put(client, headers, bad_date), 422, "invalid_field")
    with app.app_context():  # every refusal left nothing behind
        assert len(db.session.scalars(select(BeneficiaryDesignation)).all()) == 3
        events = db.session.scalars(
            select(AuditEvent.event).where(AuditEvent.event == "beneficiaries_designated")
        ).all()
        assert len(events) == 3


def test_beneficiaries_refused_without_death_cover(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET, options=("perte_retraite",))
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    r = _put(client, agent_token(client), _named("100"))
    assert_error(r, 409, "no_death_cover")
    assert "option décès" in r.json["error"]["message"]
    # the page says why, and offers no form
    page_sign_in(client)
    with app.app_context():
        membership = db.session.scalar(select(Membership.id))
    page = client.get(f"/adherent/adhesions/{membership}/beneficiaires")
    text = visible_text(page.get_data(as_text=True))
    assert "ne comprend pas l'option décès" in text and 'id="designation"' not in page.get_data(
        as_text=True
    )
    assert "Désigner mes bénéficiaires" not in client.get("/adherent").get_data(as_text=True)


# -- scoping ---------------------------------------------------------------------------------


def test_agent_sees_only_themself_and_reaches_no_other_space(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    other_employer: dict[str, Any],
) -> None:
    mine = add_membership(app, SIRET)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    theirs = add_membership(
        app,
        OTHER_SIRET,
        email_address="jean.martin@example.fr",
        first_name="Jean",
        last_name="Martin",
        number=2,
    )
    assert activate(client, token_of(mailed_link(app, "jean.martin@example.fr"))).status_code == 201
    marie = agent_token(client)
    jean = agent_token(client, "jean.martin@example.fr")

    me = client.get("/api/v1/agents/me", headers=jean).json
    assert [m["id"] for m in me["memberships"]] == [theirs]
    for path in ("/api/v1/agents/me/certificate.pdf", "/api/v1/agents/me/beneficiaries"):
        assert_error(
            client.get(f"{path}?membership={mine}", headers=jean), 404, "membership_not_found"
        )
    assert_error(_put(client, jean, _named("100"), membership=mine), 404, "membership_not_found")
    own = client.get(f"/api/v1/agents/me/certificate.pdf?membership={mine}", headers=marie)
    assert own.status_code == 200
    # the pages likewise
    page_client = app.test_client()
    page_sign_in(page_client, "jean.martin@example.fr")
    assert page_client.get(f"/adherent/adhesions/{theirs}/certificat.pdf").status_code == 200
    assert page_client.get(f"/adherent/adhesions/{mine}/certificat.pdf").status_code == 404
    assert page_client.get(f"/adherent/adhesions/{mine}/beneficiaires").status_code == 404

    # staff tokens cannot use /agents/me; agent tokens reach no staff, CDG or employer endpoint
    assert_error(client.get("/api/v1/agents/me", headers=staff), 403, "forbidden")
    for path in (
        f"/api/v1/employers/{SIRET}",
        "/api/v1/employers?cdg=81",
        f"/api/v1/conventions/{employer['convention_id']}/simulation?gross=1500.00",
        "/api/v1/returns?status=pending_review",
    ):
        assert client.get(path, headers=marie).status_code == 403, path
    # a staff page refuses an agent's session in French; an agent page sends others to sign in
    assert page_client.get("/").status_code == 403
    anonymous = app.test_client()
    r = anonymous.get("/adherent")
    assert r.status_code == 302 and "/adherent/connexion" in r.headers["Location"]


# -- pages -----------------------------------------------------------------------------------


def test_agent_pages_french_without_codes(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    membership = add_membership(app, SIRET, individual=True)
    link = mailed_link(app)
    page = client.get(link)
    assert page.status_code == 200
    form = {"jeton": token_of(link), "csrf_token": csrf(client, link)}
    r = client.post(
        "/adherent/activation", data={**form, "password": PASSWORD, "confirmation": "autre chose"}
    )
    assert r.status_code == 422 and "diffèrent" in r.get_data(as_text=True)
    r = client.post(
        "/adherent/activation", data={**form, "password": PASSWORD, "confirmation": PASSWORD}
    )
    assert r.status_code == 302 and r.headers["Location"].endswith("/adherent")
    home = visible_text(client.get("/adherent").get_data(as_text=True), cells=True)
    for expected in ("ADH-81-000001", "39,00 €", "24,00 €", "1er mars 2025", "lettre recommandée"):
        assert expected in home, expected
    assert codes_in(home) == [] and "deces" not in home and "invited" not in home

    path = f"/adherent/adhesions/{membership}/beneficiaires"
    token = csrf(client, path)
    r = client.post(
        path,
        data={
            "csrf_token": token,
            "clause": "specific",
            "name": ["Paul Durand", "Léa Durand", ""],
            "birth_date": ["1984-02-03", "2012-09-30", ""],
            "relationship": ["conjoint", "enfant", "conjoint"],
            "share": ["60", "39,99", ""],
        },
    )
    assert r.status_code == 422 and "99,99" in r.get_data(as_text=True)
    r = client.post(
        path,
        data={
            "csrf_token": token,
            "clause": "specific",
            "name": ["Paul Durand", "Léa Durand"],
            "birth_date": ["1984-02-03", "2012-09-30"],
            "relationship": ["conjoint", "enfant"],
            "share": ["60", "40"],
        },
    )
    assert r.status_code == 302
    text = visible_text(client.get(path).get_data(as_text=True), cells=True)
    assert "Paul Durand" in text and "60,00 %" in text and "conjoint ou conjointe" in text
    assert "3 février 1984" in text and codes_in(text) == [] and "specific" not in text

    # the notice of the employer's kit
    assert client.get(f"/adherent/adhesions/{membership}/notice.pdf").status_code == 404
    record_prerequisites(client.application, SIRET)
    assert client.post(f"/api/v1/employers/{SIRET}/kits", json={}, headers=staff).status_code == 201
    notice = client.get(f"/adherent/adhesions/{membership}/notice.pdf")
    assert notice.status_code == 200 and "Notice d'information" in pdftotext(notice.data)


# -- the journey in Chromium -----------------------------------------------------------------


def test_agent_journey_in_chromium_at_phone_width(
    app: Flask,
    employer: dict[str, Any],
    live: str,  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    add_membership(app, SIRET)
    link = mailed_link(app)
    CHROMIUM_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    s = Session(browser, live, CHROMIUM_ARTIFACTS, width=390)
    page = s.page

    s.go(link)
    s.check_a11y("activation")
    page.fill("#password", PASSWORD)
    page.fill("#confirmation", PASSWORD)
    s.shot("1-activation")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/adherent")
    assert "39,00\u00a0€" in page.inner_text("main")
    no_sideways = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(no_sideways)
    s.shot("2-adhesions")
    s.check_a11y("adhesions")

    # sign out, then back in
    page.click("text=Se déconnecter")
    page.wait_for_url(f"{live}/adherent/connexion")
    page.fill("#email", "marie.durand@example.fr")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/adherent")

    with page.expect_download() as download:
        page.click("text=Télécharger mon certificat d'adhésion (PDF)")
    pdf = Path(download.value.path()).read_bytes()
    assert "DURAND Marie" in pdftotext(pdf)

    page.click("text=Désigner mes bénéficiaires")
    page.check("#clause-specific")
    page.fill("#name-1", "Paul Durand")
    page.fill("#birth_date-1", "1984-02-03")
    page.select_option("#relationship-1", "conjoint")
    page.fill("#share-1", "60")
    page.fill("#name-2", "Léa Durand")
    page.fill("#birth_date-2", "2012-09-30")
    page.select_option("#relationship-2", "enfant")
    page.fill("#share-2", "30")
    assert page.inner_text("#total") == "90,00\u00a0%"
    page.click("#add-row")
    page.fill("#name-3", "Hugo Durand")
    page.fill("#share-3", "5")
    page.click("#rows [data-row]:nth-child(3) [data-remove]")
    assert page.locator("#rows [data-row]").count() == 2
    page.fill("#share-2", "40")
    assert page.inner_text("#total") == "100,00\u00a0%"
    assert page.evaluate(no_sideways)
    s.shot("3-beneficiaires")
    page.click("text=Enregistrer ma désignation")
    page.wait_for_selector("text=Votre désignation de bénéficiaires est enregistrée.")
    main = page.inner_text("main")
    assert "Léa Durand" in main and "40,00" in main and "Clause particulière" in main
    s.check_a11y("beneficiaires")
    s.shot("4-enregistre")
    assert s.errors == []
    with app.app_context():
        row = db.session.scalar(select(BeneficiaryDesignation))
        assert row is not None and [b["share"] for b in row.beneficiaries] == ["60.00", "40.00"]


# -- the API's description, with an agent's token ----------------------------------------------


@pytest.mark.parametrize("backend", ["postgres"])
def test_agent_api_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    app: Flask, client: FlaskClient, employer: dict[str, Any]
) -> None:
    add_membership(app, SIRET)
    assert activate(client, token_of(mailed_link(app))).status_code == 201
    headers = agent_token(client)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/agents"):
            continue
        if operation.method.upper() == "DELETE":  # signing out: the token would stop working
            continue
        operations += 1
        _operation_test(operation, headers, failures)()
    assert operations >= 6
    assert not failures, "\n".join(dict.fromkeys(failures))
