"""The proof certificate per kit: who may download it, what it states, PDF/A, archived copy."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pikepdf
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from flask import Flask
from flask.testing import FlaskClient

from service.archive.models import ArchiveRecord
from service.backends import archive_store, document_store
from service.config import Settings
from service.engine.models import Job
from service.extensions import db
from service.kits.models import Kit
from service.kits.proof import ArchivedFacts, archived_proof, time_label
from tests.conftest import auth, create_token, employer_payload, record_prerequisites, run_jobs
from tests.pdftools import every_font_embedded, fold
from tests.pki import Pki, sign_pdf
from tests.test_pages import csrf, sign_in
from tests.test_reference_api import assert_error
from tests.test_returns import PIECES, SIRET, blank_pdf, issued_pdf, portal, upload

PARIS = ZoneInfo("Europe/Paris")
#: codes that must never reach a person (kinds, states, events, actors)
CODES = (
    "special-conditions",
    "membership-agreement",
    "information-notice",
    "enrolment-form",
    "access-letter",
    "pending_review",
    "accepted",
    "refused",
    "employer_signed",
    "countersigned",
    "archived",
    "superseded",
    "kit_issued",
    "return_received",
    "return_accepted",
    "return_reviewed",
    "portal_session",
    "downloaded",
    "employer:",
    "staff:",
    "cdg:",
    "system",
    "proof",
)


def pdftotext(data: bytes) -> str:
    """The text as poppler reads it, whitespace folded (a hash never wraps in the layout)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as tmp:
        tmp.write(data)
        tmp.flush()
        out = subprocess.run(
            ["pdftotext", "-enc", "UTF-8", tmp.name, "-"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode()
    return fold(out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def paris_minute(iso: str) -> str:
    """`2026-11-22T14:49:03Z` → `22 novembre 2026 à 15 h 49 min` (what the certificate prints)."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(PARIS)
    return time_label(moment).rsplit(" ", 2)[0]


def assert_pdfa(data: bytes) -> None:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        meta = pdf.open_metadata()
        assert meta.get("pdfaid:part") == "2" and meta.get("pdfaid:conformance") == "B"
        assert "Certificat de preuve" in str(meta.get("dc:title"))
        intents = pdf.Root.OutputIntents
        assert len(intents) == 1 and intents[0].S == "/GTS_PDFA1"
        assert intents[0].DestOutputProfile.read_bytes()[36:40] == b"acsp"  # an ICC profile
        assert str(pdf.Root.Lang).startswith("fr")
    assert every_font_embedded(data) == []


def assert_no_code(text: str) -> None:
    lowered = text.lower()
    for code in CODES:
        assert code not in lowered, code


def issue(client: FlaskClient, staff: dict[str, str], siret: str = SIRET) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


def test_time_label_is_in_paris_time_summer_and_winter() -> None:
    assert time_label(datetime(2026, 7, 1, 12, 0, 5)) == "1er juillet 2026 à 14 h 00 min 05 s"
    assert time_label("2026-01-15T23:30:00Z") == "16 janvier 2026 à 0 h 30 min 00 s"
    assert time_label(datetime(2026, 1, 15, 23, 30), "UTC") == "15 janvier 2026 à 23 h 30 min 00 s"


def test_proof_downloads_for_each_role_and_404_outside_scope(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
) -> None:
    kit = issue(client, staff)
    other = employer_payload(employer["convention_id"], siret="21810001400016", name="Aguts")
    assert client.post("/api/v1/employers", json=other, headers=staff).status_code == 201
    record_prerequisites(client.application, other["siret"])
    other_kit = issue(client, staff, siret=other["siret"])
    own_employer = auth(portal(client, kit["access_code"]).json["token"])
    other_employer = auth(
        portal(client, other_kit["access_code"], siret=other["siret"]).json["token"]
    )
    own_cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    other_cdg = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    url = f"/api/v1/kits/{kit['id']}/proof.pdf"
    assert kit["proof_url"] == url

    for headers in (staff, own_employer, own_cdg):
        r = client.get(url, headers=headers)
        assert r.status_code == 200 and r.mimetype == "application/pdf"
        assert r.data.startswith(b"%PDF-")
        assert "certificat-de-preuve" in r.headers["Content-Disposition"]
    for headers in (other_employer, other_cdg):
        assert_error(client.get(url, headers=headers), 404, "unknown_kit")
    assert client.get(url).status_code == 401

    # the download is in the audit trail with the SHA-256 of the file served
    r = client.get(url, headers=staff)
    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    last = events[-1]
    assert last["event"] == "downloaded" and last["details"] == {"file": "proof.pdf"}
    assert last["sha256_after"] == sha(r.data)

    # before anything is signed: what happened so far, nothing more
    text = pdftotext(r.data)
    assert "Aucune pièce signée n'a encore été reçue" in text
    assert "Rien n'est encore archivé" in text
    assert "émis, en attente des pièces signées par la collectivité" in text
    assert f"le {paris_minute(kit['issued_at'])}" in text
    assert "gestionnaire production@assureur.fr" in text
    assert "Centre de gestion du Tarn (CDG 81)" in text and "Allianz Vie" in text
    assert "Collecteam" in text and "Commune : Albi" in text and "218 100 048 00014" in text
    assert_no_code(text)
    assert_pdfa(r.data)


def test_proof_names_the_reviewer_of_a_scanned_piece(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    headers = auth(portal(client, kit["access_code"]).json["token"])
    pages = next(d["pages"] for d in kit["documents"] if d["kind"] == PIECES[0])
    scan = blank_pdf(pages)
    received = upload(client, headers, kit, PIECES[0], scan)
    assert received.status_code == 201 and received.json["status"] == "pending_review"
    decided = client.post(
        f"/api/v1/returns/{received.json['id']}/decision", json={"accept": True}, headers=staff
    )
    assert decided.status_code == 200
    text = pdftotext(client.get(f"/api/v1/kits/{kit['id']}/proof.pdf", headers=headers).data)
    assert "Conditions particulières – reçue le" in text
    assert "signature manuscrite numérisée, vérifiée visuellement par le gestionnaire" in text
    # the employer's copy names the reviewer's role, not their e-mail address
    assert "acceptée après examen par gestionnaire le" in text
    assert "production@assureur.fr" not in text
    assert "la collectivité Albi (SIRET 218 100 048 00014), depuis l'adresse 127.0.0.1" in text
    assert sha(scan) in text
    assert_no_code(text)


def countersigned_kit(
    client: FlaskClient, staff: dict[str, str], pki: Pki
) -> tuple[dict[str, Any], dict[str, bytes]]:
    kit = issue(client, staff)
    headers = auth(portal(client, kit["access_code"]).json["token"])
    uploaded = {}
    for kind in PIECES:
        signed = sign_pdf(issued_pdf(client, headers, kit, kind), pki.trusted)
        r = upload(client, headers, kit, kind, signed)
        assert r.json["status"] == "accepted", r.json
        uploaded[kind] = signed
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200 and r.json["status"] == "countersigned", r.json
    run_jobs(client.application)  # the archive copies (and e-mails), as a worker runs them
    r = client.get(f"/api/v1/kits/{kit['id']}", headers=staff)
    assert r.json["status"] == "archived", r.json
    return r.json, uploaded


def archive_rows(app: Flask, kit_id: int) -> dict[str, dict[str, Any]]:
    with app.app_context():
        rows = db.session.scalars(db.select(ArchiveRecord).filter_by(kit_id=kit_id)).all()
        return {
            r.kind: {"id": r.id, "key": r.key, "sha256": r.sha256, "size": r.size} for r in rows
        }


def insurer_fingerprint(app: Flask) -> str:
    path = Path(app.instance_path) / "signing" / "dev-countersign.p12"
    _key, cert, _chain = pkcs12.load_key_and_certificates(path.read_bytes(), None)
    assert cert is not None
    return sha(cert.public_bytes(Encoding.DER))


def test_proof_states_the_facts_of_a_countersigned_kit(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    artifacts: Path,
) -> None:
    kit, uploaded = countersigned_kit(client, staff, pki)
    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    r = client.get(f"/api/v1/kits/{kit['id']}/proof.pdf", headers=staff)
    assert r.status_code == 200
    (artifacts / "certificat-de-preuve.pdf").write_bytes(r.data)  # for a look by a person
    text = pdftotext(r.data)

    # fingerprints: the issued files, the returns, the countersigned copies, the archive
    for doc in kit["documents"]:
        stored = client.get(doc["pdf_url"], headers=staff).data
        assert sha(stored) == doc["sha256"] and doc["sha256"] in text, doc["kind"]
    for kind, data in uploaded.items():
        assert sha(data) in text, kind
        copy = client.get(f"/api/v1/kits/{kit['id']}/documents/{kind}/signed.pdf", headers=staff)
        assert sha(copy.data) in text, kind
    archived = archive_rows(app, kit["id"])
    assert set(archived) == {*PIECES, "manifest", "proof"}
    for item in archived.values():
        assert item["sha256"] in text and item["key"].rsplit("/", 1)[-1] in text
    # certificates: the employer's signer and the insurer's countersigning key
    employer_cert = pki.trusted.cert.public_bytes(Encoding.DER)
    assert sha(employer_cert) in text
    assert format(pki.trusted.cert.serial_number, "x") in text
    assert "Marie Dupont, Mairie d'Albi" in text
    assert "Émetteur du certificat : Nom : Intermédiaire de test PSC" in text
    assert "Common Name" not in text and "Country" not in text
    assert insurer_fingerprint(app) in text
    assert "certificat reconnu par les autorités de confiance du service" in text
    assert "signature PAdES de base (B-B)" in text
    # the audit chain at that moment: the chain's last event and the kit's last event
    assert events[-1]["hash"] in text
    assert f"{len(events)} événements pour ce kit" in text
    # French, Paris time, no code
    assert "heure de Paris" in text and "contresigné et archivé" in text
    assert "Conditions particulières" in text and "Convention d'adhésion" in text
    assert "Pièce contresignée par l'assureur : Convention d'adhésion" in text
    accepted = next(e for e in events if e["event"] == "return_accepted")
    assert paris_minute(accepted["at"]) in text
    counter = next(e for e in events if e["event"] == "countersigned")
    assert f"le {paris_minute(counter['at'])}" in text
    assert_no_code(text)
    assert_pdfa(r.data)


def test_proof_is_archived_next_to_the_manifest_and_rebuilds_identically(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    kit, uploaded = countersigned_kit(client, staff, pki)
    items = archive_rows(app, kit["id"])
    proof, manifest = items["proof"], items["manifest"]
    folder = manifest["key"].rsplit("/", 1)[0]
    assert proof["key"] == f"{folder}/certificat-de-preuve.pdf"
    stored = client.get(f"/api/v1/archive/{proof['id']}/content", headers=staff)
    assert stored.status_code == 200 and sha(stored.data) == proof["sha256"]
    text = pdftotext(stored.data)
    assert "Exemplaire archivé avec le manifeste" in text
    assert manifest["sha256"] in text and manifest["key"].rsplit("/", 1)[-1] in text
    for kind in PIECES:
        assert items[kind]["sha256"] in text and sha(uploaded[kind]) in text
    assert proof["sha256"] not in text  # it cannot state its own fingerprint
    assert_no_code(text)
    assert_pdfa(stored.data)
    with app.app_context():
        # a re-run of the manifest job rebuilds the same bytes (no conflict under retention)
        row = db.session.get(Kit, kit["id"])
        pieces = [
            r
            for r in db.session.scalars(db.select(ArchiveRecord).filter_by(kit_id=kit["id"]))
            if r.kind in PIECES
        ]
        again = archived_proof(
            row,
            documents=document_store(),
            pieces=pieces,
            manifest=ArchivedFacts(
                "Manifeste de l'archive", manifest["key"], manifest["sha256"], manifest["size"], ""
            ),
        )
        assert sha(again) == proof["sha256"]
        assert archive_store().get(proof["key"]) == stored.data
    result = app.test_cli_runner().invoke(args=["archive", "verify"])
    assert result.exit_code == 0 and "4 copies relues, 0 écart" in result.output

    # the process "died" after the uploads, before recording them: the job runs again later
    # (and more events have happened since), finds the same bytes and only records them
    client.get(f"/api/v1/kits/{kit['id']}/proof.pdf", headers=staff)
    with app.app_context():
        for rec in db.session.scalars(
            db.select(ArchiveRecord).where(ArchiveRecord.kind.in_(("manifest", "proof")))
        ):
            db.session.delete(rec)
        job = next(
            j
            for j in db.session.scalars(db.select(Job).filter_by(task="psc.archive.copy"))
            if j.payload["kind"] == "manifest"
        )
        job.status = "pending"
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["archive", "retry"])
    assert result.exit_code == 0 and "1 copie archivée, 0 échec" in result.output
    assert archive_rows(app, kit["id"])["proof"]["sha256"] == proof["sha256"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_proof_links_on_the_staff_cdg_and_portal_pages(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    link = f"/kits/{kit['id']}/certificat-de-preuve.pdf"
    pages = app.test_client()
    sign_in(app, pages, "chef@assureur.fr")
    assert link in pages.get(f"/employeurs/{SIRET}").get_data(as_text=True)
    r = pages.get(link)
    assert r.status_code == 200 and r.data.startswith(b"%PDF-")

    pages = app.test_client()
    sign_in(app, pages, "suivi@cdg81.fr", role="cdg", cdg="81")
    assert link in pages.get("/cdg").get_data(as_text=True)
    assert pages.get(link).status_code == 200

    client = app.test_client()
    r = client.post(
        "/portail",
        data={
            "siret": SIRET,
            "access_code": kit["access_code"],
            "csrf_token": csrf(client, "/portail"),
        },
    )
    assert r.status_code == 302
    page = client.get("/portail/kit").get_data(as_text=True)
    assert "/portail/certificat-de-preuve.pdf" in page
    r = client.get("/portail/certificat-de-preuve.pdf")
    assert r.status_code == 200 and "Certificat de preuve" in pdftotext(r.data)
    assert client.get(link).status_code == 403  # the employer has no staff page: French 403
    assert "SIRET 218 100 048 00014" in pdftotext(r.data)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("app_config", [{"TIMEZONE": "UTC"}])
def test_proof_follows_the_timezone_setting(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    text = pdftotext(client.get(f"/api/v1/kits/{kit['id']}/proof.pdf", headers=staff).data)
    issued = datetime.fromisoformat(kit["issued_at"].replace("Z", "+00:00"))
    assert "heure locale (UTC)" in text and "heure de Paris" not in text
    assert f"le {time_label(issued, 'UTC').rsplit(' ', 2)[0]}" in text


def test_settings_refuse_an_unknown_timezone(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TIMEZONE"):
        Settings.from_env({"INSTANCE_PATH": str(tmp_path), "TIMEZONE": "Mars/Olympus"})
    assert Settings.from_env({"INSTANCE_PATH": str(tmp_path)}).timezone == "Europe/Paris"
