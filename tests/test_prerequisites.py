"""Prerequisites per employer: a kit is refused (409 `prerequisites_missing`, with the list) on
the API, the staff pages and the CLI while a paper is missing; staff may override with a reason,
audited and printed in the proof certificate; campaigns list such employers apart."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from service.audit.models import AuditEvent
from service.backends import document_store
from service.campaigns.domain import start_campaign
from service.engine.models import Job
from service.extensions import db
from service.reference.rules import siret_from_siren
from tests.conftest import (
    CORPUS,
    auth,
    create_token,
    employer_payload,
    record_prerequisites,
    run_jobs,
)
from tests.pdftools import pdf_text
from tests.test_pages import csrf, sign_in

PDF = (CORPUS / "pairs" / "valid_modification" / "unsigned.pdf").read_bytes()
OTHER_PDF = (CORPUS / "pairs" / "poppler" / "unsigned.pdf").read_bytes()
SIRET = "21810004800014"
KINDS = ["subscription-request", "deliberation", "cst-opinion", "premium-elements-list"]


@pytest.fixture
def bare_employer(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> dict[str, Any]:
    """An employer typed in by staff, none of its papers received yet."""
    r = client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def upload(client: FlaskClient, staff: dict[str, str], kind: str, data: bytes = PDF) -> Any:
    return client.post(
        f"/api/v1/employers/{SIRET}/prerequisites/{kind}",
        data={"file": (io.BytesIO(data), f"{kind}.pdf"), "received_on": "2024-12-02"},
        content_type="multipart/form-data",
        headers=staff,
    )


def test_kit_refused_while_missing_then_override_audited_in_proof(
    app: Flask, client: FlaskClient, staff: dict[str, str], bare_employer: dict[str, Any]
) -> None:
    url = f"/api/v1/employers/{SIRET}/kits"
    r = client.post(url, headers=staff)
    assert r.status_code == 409
    assert r.json["error"]["code"] == "prerequisites_missing"
    assert r.json["error"]["missing"] == KINDS
    assert "délibération" in r.json["error"]["message"]
    for kind in KINDS[:3]:
        assert upload(client, staff, kind).status_code == 201
    listed = client.get(f"/api/v1/employers/{SIRET}/prerequisites", headers=staff).json
    assert listed["complete"] is False and listed["missing"] == ["premium-elements-list"]
    assert [i["received_at"] for i in listed["items"]] == ["2024-12-02"] * 3
    r = client.post(url, headers=staff)
    assert r.status_code == 409 and r.json["error"]["missing"] == ["premium-elements-list"]
    assert "liste des éléments de rémunération" in r.json["error"]["message"]
    with app.app_context():
        assert (
            db.session.scalars(select(AuditEvent).where(AuditEvent.kit_id.is_not(None))).all() == []
        )

    # API.md's `override_reason`: staff issue without the papers, audited, printed in the proof
    reason = "Liste promise par le DGS, envoi du kit demandé par le CDG avant le conseil"
    r = client.post(url, json={"override_reason": reason}, headers=staff)
    assert r.status_code == 201, r.json
    kit = r.json
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(
                AuditEvent.kit_id == kit["id"], AuditEvent.event == "prerequisites_overridden"
            )
        )
        assert event is not None and event.actor == "staff:production@assureur.fr"
        assert event.details["missing"] == ["premium-elements-list"]
        assert event.details["reason"] == reason
    proof = client.get(kit["proof_url"], headers=staff)
    assert proof.status_code == 200
    text = " ".join(" ".join(pdf_text(proof.data)).split())
    assert "Émis sans toutes les pièces préalables" in text
    assert "liste des éléments de rémunération à assurer" in text
    assert reason in text

    # `prerequisites_override_reason` excuses the papers only (a newer kit supersedes this one)
    other = "Délibération transmise par courriel, original attendu"
    r = client.post(url, json={"prerequisites_override_reason": other}, headers=staff)
    assert r.status_code == 201, r.json
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(
                AuditEvent.kit_id == r.json["id"], AuditEvent.event == "prerequisites_overridden"
            )
        )
        assert event is not None and event.details["reason"] == other


@pytest.mark.parametrize("backend", ["sqlite"])
def test_prerequisites_seen_by_own_cdg_only_and_uploads_checked(
    app: Flask, client: FlaskClient, staff: dict[str, str], bare_employer: dict[str, Any]
) -> None:
    cdg82 = {"code": "82", "name": "CDG du Tarn-et-Garonne", "email": "cdg@cdg82.fr"}
    assert client.post("/api/v1/cdgs", json=cdg82, headers=staff).status_code == 201
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    other = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    url = f"/api/v1/employers/{SIRET}/prerequisites"
    assert client.get(url, headers=own).json["missing"] == KINDS
    assert client.get(url, headers=other).status_code == 404
    assert client.get(url).status_code == 401
    # only staff record papers
    assert upload(client, own, "deliberation").status_code == 403
    unknown = upload(client, staff, "attestation")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_prerequisite"
    encrypted = upload(
        client, staff, "deliberation", (CORPUS / "pdf" / "encrypted.pdf").read_bytes()
    )
    assert encrypted.status_code == 422 and encrypted.json["error"]["code"] == "encrypted_pdf"
    script = upload(
        client, staff, "cst-opinion", (CORPUS / "pdf" / "pdfjs-js-buttons.pdf").read_bytes()
    )
    assert script.status_code == 422 and script.json["error"]["code"] == "active_content"
    text = upload(client, staff, "deliberation", b"pas un PDF")
    assert text.status_code == 422 and text.json["error"]["code"] == "not_a_pdf"
    future = client.post(
        f"/api/v1/employers/{SIRET}/prerequisites/deliberation",
        data={"file": (io.BytesIO(PDF), "d.pdf"), "received_on": "2999-01-01"},
        content_type="multipart/form-data",
        headers=staff,
    )
    assert future.status_code == 422 and future.json["error"]["code"] == "received_in_future"
    assert client.get(url, headers=own).json["missing"] == KINDS  # nothing half-recorded
    assert upload(client, staff, "deliberation").status_code == 201
    got = client.get(f"{url}/deliberation/file", headers=own)
    assert got.status_code == 200 and got.data == PDF


@pytest.mark.parametrize("backend", ["sqlite"])
def test_campaign_lists_employers_waiting_for_papers_apart(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    sirets = []
    for n in range(3):
        siret = siret_from_siren(f"2181{n:05d}")
        payload = employer_payload(
            convention["id"], siret=siret, name=f"Commune {n}", email=f"rh{n}@mairie.fr"
        )
        assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
        sirets.append(siret)
    record_prerequisites(app, sirets[0], sirets[2])
    with app.app_context():
        campaign = start_campaign("81", actor="staff:test", send=False)
        campaign_id, total = campaign.id, campaign.total
        assert total == 2
        payloads = [
            j.payload for j in db.session.scalars(select(Job).where(Job.campaign_id == campaign_id))
        ]
        assert len(payloads) == 2
    run_jobs(app)
    r = client.get(f"/api/v1/campaigns/{campaign_id}", headers=staff).json
    assert (r["total"], r["done"], r["failed"], r["failures"]) == (2, 2, 0, [])
    assert r["waiting_for_prerequisites"] == [{"siret": sirets[1], "name": "Commune 1"}]
    # a new campaign has only the waiting employer left: nothing to issue, it says why
    again = client.post("/api/v1/cdgs/81/campaigns", headers=staff)
    assert again.status_code == 409 and again.json["error"]["code"] == "nothing_to_issue"
    assert "pièces préalables" in again.json["error"]["message"]
    sign_in(app, client, "chef@assureur.fr")
    page = client.get(f"/lots/{campaign_id}").get_data(as_text=True)
    assert "En attente de pièces" in page and "Commune 1" in page
    assert "Ce ne sont pas des échecs" in page


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_issue_refused_then_override(
    app: Flask, client: FlaskClient, staff: dict[str, str], bare_employer: dict[str, Any]
) -> None:
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["kits", "issue", "--siret", SIRET])
    assert refused.exit_code == 1
    assert "prerequisites_missing" in refused.output and "délibération" in refused.output
    issued = runner.invoke(
        args=[
            "kits",
            "issue",
            "--siret",
            SIRET,
            "--prerequisites-override-reason",
            "Pièces promises par courrier",
        ]
    )
    assert issued.exit_code == 0, issued.output
    assert re.search(r"Kit PSC-81-\d{4}-\d{6} émis", issued.output)
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.event == "prerequisites_overridden")
        )
        assert event is not None and event.actor.startswith("cli:")
        assert event.details["missing"] == KINDS


@pytest.mark.parametrize("backend", ["sqlite"])
def test_employer_page_refuses_kit_then_issues_with_reason(
    app: Flask, client: FlaskClient, bare_employer: dict[str, Any]
) -> None:
    sign_in(app, client, "chef@assureur.fr")
    page = client.get(f"/employeurs/{SIRET}").get_data(as_text=True)
    assert "Pièces préalables" in page and "manquante" in page
    assert "Motif d'une émission sans toutes les pièces préalables" in page
    token = csrf(client, f"/employeurs/{SIRET}")
    r = client.post(f"/employeurs/{SIRET}/kit", data={"csrf_token": token})
    assert r.status_code == 302
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Pièces préalables manquantes" in page
    # a paper received by post, recorded on the page
    r = client.post(
        f"/employeurs/{SIRET}/pieces",
        data={
            "csrf_token": token,
            "kind": "deliberation",
            "received_on": "2024-12-01",
            "file": (io.BytesIO(PDF), "deliberation.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 302
    page = client.get(f"/employeurs/{SIRET}").get_data(as_text=True)
    assert "1er décembre 2024" in page and "reçue par courrier" in page
    r = client.post(
        f"/employeurs/{SIRET}/kit",
        data={
            "csrf_token": token,
            "prerequisites_override_reason": "Pièces attendues cette semaine",
        },
    )
    assert r.status_code == 200
    assert re.search(r"PSC-81-\d{4}-\d{6}", r.get_data(as_text=True))
    with app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(AuditEvent.event == "prerequisites_overridden")
        )
        assert event is not None and event.details["reason"] == "Pièces attendues cette semaine"
        assert event.details["missing"] == [k for k in KINDS if k != "deliberation"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_employers_have_their_papers_labelled_as_demo(
    app: Flask, client: FlaskClient, staff: dict[str, str]
) -> None:
    from service.demo.load import load_demo
    from service.reference.models import Employer
    from service.subscriptions.models import Prerequisite

    with app.app_context():
        result = load_demo(everything=False)
        sirets = list(db.session.scalars(select(Employer.siret)))
        sources = set(db.session.scalars(select(Prerequisite.source)))
    assert result and sirets and sources == {"demo"}
    for siret in sirets[:3]:
        listed = client.get(f"/api/v1/employers/{siret}/prerequisites", headers=staff).json
        assert listed["complete"] is True and len(listed["items"]) == 4
    paper = client.get(listed["items"][0]["file_url"], headers=staff)
    assert "Pièce de démonstration" in " ".join(pdf_text(paper.data))
    assert client.post(f"/api/v1/employers/{sirets[0]}/kits", headers=staff).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite"])
def test_prerequisite_replacement_failing_at_commit_keeps_the_file_in_use(
    app: Flask, client: FlaskClient, staff: dict[str, str], bare_employer: dict[str, Any]
) -> None:
    assert upload(client, staff, "deliberation").status_code == 201
    with app.app_context():
        before = set(info.key for info in document_store().list("prerequisites/"))
    assert len(before) == 1

    def refuse(session: Any) -> None:
        raise RuntimeError("database went away")

    event.listen(Session, "before_commit", refuse)
    try:
        assert upload(client, staff, "deliberation", OTHER_PDF).status_code == 500
    finally:
        event.remove(Session, "before_commit", refuse)
    with app.app_context():
        after = set(info.key for info in document_store().list("prerequisites/"))
    assert after == before  # the new file discarded, the one in use kept
    got = client.get(f"/api/v1/employers/{SIRET}/prerequisites/deliberation/file", headers=staff)
    assert got.status_code == 200 and got.data == PDF


@pytest.mark.parametrize("backend", ["sqlite"])
def test_prerequisite_file_names_and_messages_carry_no_code(
    client: FlaskClient, staff: dict[str, str], bare_employer: dict[str, Any]
) -> None:
    assert upload(client, staff, "cst-opinion").status_code == 201
    got = client.get(f"/api/v1/employers/{SIRET}/prerequisites/cst-opinion/file", headers=staff)
    disposition = got.headers["Content-Disposition"]
    assert f"avis-du-comite-social-territorial-cst-{SIRET}.pdf" in disposition
    assert "cst-opinion" not in disposition
    unknown = upload(client, staff, "attestation")
    message = unknown.json["error"]["message"]
    assert "délibération" in message and "premium-elements-list" not in message
    listed = client.get("/api/v1/subscriptions?status=perdu", headers=staff)
    assert listed.status_code == 422
    assert "submitted" not in listed.json["error"]["message"]
    assert "à examiner" in listed.json["error"]["message"]
