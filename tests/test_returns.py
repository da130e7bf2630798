"""Signed returns end to end: portal, verification with a real PKI, attacks, review, countersign."""

from __future__ import annotations

import io
import itertools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader, PdfWriter
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from service.extensions import db
from service.kits.models import Kit
from tests import attacks
from tests.conftest import auth, employer_payload, record_prerequisites, run_jobs
from tests.pdftools import every_font_embedded
from tests.pki import Pki, sign_pdf
from tests.test_reference_api import assert_error

SIRET = "21810004800014"
PIECES = ("special-conditions", "membership-agreement")


@pytest.fixture
def kit(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201
    return r.json


def portal(client: FlaskClient, code: str, siret: str = SIRET) -> Any:
    return client.post(
        "/api/v1/portal/session",
        json={"siret": siret, "access_code": code},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )


@pytest.fixture
def employer_auth(client: FlaskClient, kit: dict[str, Any]) -> dict[str, str]:
    r = portal(client, kit["access_code"])
    assert r.status_code == 200, r.json
    return auth(r.json["token"])


def issued_pdf(
    client: FlaskClient, headers: dict[str, str], kit: dict[str, Any], kind: str
) -> bytes:
    doc = next(d for d in kit["documents"] if d["kind"] == kind)
    r = client.get(doc["pdf_url"], headers=headers)
    assert r.status_code == 200
    return r.data


def upload(
    client: FlaskClient,
    headers: dict[str, str],
    kit: dict[str, Any],
    kind: str,
    data: bytes,
    name: str = "signe.pdf",
) -> Any:
    return client.post(
        f"/api/v1/kits/{kit['id']}/documents/{kind}/returns",
        data={"file": (io.BytesIO(data), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


def sign_and_upload(
    client: FlaskClient, headers: dict[str, str], kit: dict[str, Any], kind: str, party: Any
) -> Any:
    return upload(
        client, headers, kit, kind, sign_pdf(issued_pdf(client, headers, kit, kind), party)
    )


# -- portal --------------------------------------------------------------------------------


def test_portal_session_scopes_the_employer(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
) -> None:
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=employer_auth).status_code == 200
    assert client.get(f"/api/v1/employers/{SIRET}", headers=employer_auth).status_code == 200
    r = client.post(
        "/api/v1/employers",
        json=employer_payload(kit["convention_id"], siret="21810001400016", name="Aguts"),
        headers=staff,
    )
    assert r.status_code == 201
    record_prerequisites(client.application, "21810001400016")
    other = client.post("/api/v1/employers/21810001400016/kits", headers=staff).json
    for url in (
        f"/api/v1/kits/{other['id']}",
        other["bundle_url"],
        "/api/v1/employers/21810001400016",
    ):
        assert client.get(url, headers=employer_auth).status_code == 404, url
    assert_error(client.get("/api/v1/returns", headers=employer_auth), 403, "forbidden")
    assert_error(
        client.post(f"/api/v1/employers/{SIRET}/kits", headers=employer_auth), 403, "forbidden"
    )


def test_portal_refuses_bad_pairs_alike_then_limits_then_locks(
    client: FlaskClient, staff: dict[str, str], kit: dict[str, Any]
) -> None:
    wrong = portal(client, "AAAA-BBBB-CCCC-DDDD")
    unknown = portal(client, kit["access_code"], siret="21810001400016")
    for r in (wrong, unknown):
        assert_error(r, 401, "invalid_credentials")
    assert wrong.json == unknown.json  # nothing tells whether the SIRET exists
    for _ in range(4):  # five failures in all: the limit
        assert portal(client, "AAAA-BBBB-CCCC-DDDD").status_code == 401
    assert_error(portal(client, "AAAA-BBBB-CCCC-DDDD"), 429, "too_many_attempts")
    # even the right code is refused from this address while it is blocked
    assert_error(portal(client, kit["access_code"]), 429, "too_many_attempts")
    assert client.post(f"/api/v1/employers/{SIRET}/unlock", headers=staff).status_code == 200
    assert portal(client, kit["access_code"]).status_code == 200


def test_expired_code_is_refused(app: Flask, client: FlaskClient, kit: dict[str, Any]) -> None:
    with app.app_context():
        db.session.execute(update(Kit).values(access_code_expires_at=Kit.issued_at))
        db.session.commit()
    assert_error(portal(client, kit["access_code"]), 401, "access_code_expired")


# -- verification ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_trusted_signatures_are_accepted_and_the_kit_is_employer_signed(
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    r = sign_and_upload(client, employer_auth, kit, PIECES[0], pki.trusted)
    assert r.status_code == 201, r.json
    assert r.json["status"] == "accepted"
    signer = r.json["signatures"][0]
    assert (signer["name"], signer["organisation"], signer["level"]) == (
        "Marie Dupont",
        "Mairie d'Albi",
        "B-B",
    )
    assert signer["serial"] and "Intermédiaire" in signer["issuer"] and signer["signing_time"]
    state = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json
    assert state["status"] == "issued"
    r = sign_and_upload(client, employer_auth, kit, PIECES[1], pki.trusted)
    assert r.json["status"] == "accepted"
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == (
        "employer_signed"
    )
    assert_error(
        sign_and_upload(client, employer_auth, kit, PIECES[0], pki.trusted), 422, "already_accepted"
    )


@pytest.mark.parametrize(("party", "reason"), [("untrusted", "non reconnu"), ("expired", "expiré")])
def test_untrusted_or_expired_signers_go_to_review(
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
    party: str,
    reason: str,
) -> None:
    r = sign_and_upload(client, employer_auth, kit, PIECES[0], getattr(pki, party))
    assert r.status_code == 201
    assert r.json["status"] == "pending_review"
    assert any(reason in line for line in r.json["reasons"]), r.json["reasons"]
    queue = client.get("/api/v1/returns", headers=staff).json["items"]
    assert [q["id"] for q in queue] == [r.json["id"]]


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        ("text_after_signing", "modified_after_signature"),
        ("page_after_signing", "modified_after_signature"),
        ("byte_in_signed_range", "signature_invalid"),
        ("other_document", "not_the_issued_document"),
        ("altered_before_signing", "not_the_issued_document"),
        ("insurer_key_as_employer", "wrong_signer"),
        ("second_signature_by_insurer", "wrong_signer"),
    ],
)
def test_attacks_are_refused_with_their_code(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
    attack: str,
    code: str,
) -> None:
    issued = issued_pdf(client, employer_auth, kit, PIECES[0])
    signed = sign_pdf(issued, pki.trusted)
    if attack == "text_after_signing":
        data = attacks.add_text(signed)
    elif attack == "page_after_signing":
        data = attacks.add_page(signed)
    elif attack == "byte_in_signed_range":
        data = attacks.flip_signed_byte(signed)
    elif attack == "other_document":
        data = sign_pdf(issued_pdf(client, employer_auth, kit, PIECES[1]), pki.trusted)
    elif attack == "altered_before_signing":
        data = sign_pdf(attacks.add_text(issued), pki.trusted)
    else:
        from tests.pki import Party

        with app.app_context():
            from service.backends import signing_key

            insurer = signing_key().signer
        party = Party.__new__(Party)
        party.signer = lambda: insurer  # type: ignore[method-assign]
        base = issued if attack == "insurer_key_as_employer" else signed
        data = sign_pdf(base, party, field="Signature2")
    r = upload(client, employer_auth, kit, PIECES[0], data)
    assert_error(r, 422, code, "file")
    # kept in quarantine, never served as the employer's return
    assert_error(
        client.get(f"/api/v1/kits/{kit['id']}/documents/{PIECES[0]}/signed.pdf", headers=staff),
        404,
        "no_accepted_return",
    )
    refused = client.get("/api/v1/returns?status=refused", headers=staff).json["items"]
    assert [(x["code"], x["size"]) for x in refused] == [(code, len(data))]
    with app.app_context():
        from service.backends import document_store
        from service.returns.models import KitReturn

        row = db.session.scalar(select(KitReturn))
        assert row.quarantined and row.storage_key.startswith("quarantine/")
        assert document_store().get(row.storage_key) == data


def test_rewritten_then_signed_document_goes_to_review_with_differences(
    client: FlaskClient,
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    issued = issued_pdf(client, employer_auth, kit, PIECES[0])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(issued)))  # a full rewrite, same text
    buffer = io.BytesIO()
    writer.write(buffer)
    r = upload(client, employer_auth, kit, PIECES[0], sign_pdf(buffer.getvalue(), pki.trusted))
    assert r.status_code == 201, r.json
    assert r.json["status"] == "pending_review"
    assert any("réécrit" in reason for reason in r.json["reasons"])


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_scans_need_the_right_page_count_and_a_review(
    client: FlaskClient,
    kit: dict[str, Any],
    employer_auth: dict[str, str],
) -> None:
    pages = next(d["pages"] for d in kit["documents"] if d["kind"] == PIECES[0])
    assert_error(
        upload(client, employer_auth, kit, PIECES[0], blank_pdf(pages + 1)),
        422,
        "page_count_mismatch",
    )
    r = upload(client, employer_auth, kit, PIECES[0], blank_pdf(pages))
    assert r.status_code == 201 and r.json["status"] == "pending_review"
    assert r.json["signatures"] == []
    issued = issued_pdf(client, employer_auth, kit, PIECES[1])
    assert_error(upload(client, employer_auth, kit, PIECES[1], issued), 422, "not_signed")


def test_bad_uploads_get_clear_answers(
    client: FlaskClient,
    kit: dict[str, Any],
    employer_auth: dict[str, str],
) -> None:
    assert_error(
        upload(client, employer_auth, kit, PIECES[0], b"GIF89a not a pdf"), 422, "not_a_pdf"
    )
    assert_error(upload(client, employer_auth, kit, PIECES[0], b""), 422, "empty_file")
    assert_error(
        upload(client, employer_auth, kit, "information-notice", blank_pdf(1)),
        422,
        "signature_not_expected",
    )
    assert_error(upload(client, employer_auth, kit, "nope", blank_pdf(1)), 404, "unknown_document")
    r = client.post(
        f"/api/v1/kits/{kit['id']}/documents/{PIECES[0]}/returns",
        headers=employer_auth,
        data={},
        content_type="multipart/form-data",
    )
    assert_error(r, 422, "file_missing")


@pytest.fixture
def small_uploads() -> dict[str, str]:
    return {"MAX_UPLOAD_MB": "1"}


@pytest.mark.parametrize("app_config", [{"MAX_UPLOAD_MB": "1"}])
def test_too_large_uploads_are_413(
    client: FlaskClient, kit: dict[str, Any], employer_auth: dict[str, str]
) -> None:
    big = b"%PDF-1.7\n" + b"0" * (2 * 1024 * 1024)
    assert_error(upload(client, employer_auth, kit, PIECES[0], big), 413, "too_large")


# -- review and countersignature -------------------------------------------------------------


def test_review_decisions(
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    first = sign_and_upload(client, employer_auth, kit, PIECES[0], pki.untrusted).json
    url = f"/api/v1/returns/{first['id']}/decision"
    assert_error(client.post(url, json={"accept": False}, headers=staff), 422, "reason_required")
    r = client.post(url, json={"accept": False, "reason": "Signataire non habilité"}, headers=staff)
    assert r.status_code == 200 and r.json["status"] == "refused"
    assert_error(client.post(url, json={"accept": True}, headers=staff), 409, "already_decided")
    # sent again: history kept
    second = sign_and_upload(client, employer_auth, kit, PIECES[0], pki.untrusted).json
    r = client.post(
        f"/api/v1/returns/{second['id']}/decision", json={"accept": True}, headers=staff
    )
    assert r.json["status"] == "accepted" and r.json["decided_by"] == "staff:production@assureur.fr"
    returns = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["returns"]
    assert [x["status"] for x in returns] == ["refused", "accepted"]


@pytest.mark.postgres
def test_countersign_requires_every_piece_then_signs_incrementally(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
    artifacts: Path,
) -> None:
    url = f"/api/v1/kits/{kit['id']}/countersign"
    assert_error(client.post(url, headers=staff), 409, "employer_signature_missing")
    sign_and_upload(client, employer_auth, kit, PIECES[0], pki.trusted)
    assert_error(client.post(url, headers=staff), 409, "employer_signature_missing")
    sign_and_upload(client, employer_auth, kit, PIECES[1], pki.trusted)
    r = client.post(url, headers=staff)
    assert r.status_code == 200, r.json
    # countersigned; the archive copies are jobs the workers run after the commit
    assert r.json["status"] == "countersigned"
    assert_error(client.post(url, headers=staff), 409, "already_countersigned")

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    for kind in PIECES:
        signed = client.get(
            f"/api/v1/kits/{kit['id']}/documents/{kind}/signed.pdf", headers=employer_auth
        )
        assert signed.status_code == 200
        issued = issued_pdf(client, staff, kit, kind)
        assert signed.data.startswith(issued)  # incremental: the issued bytes are untouched
        reader = PdfFileReader(io.BytesIO(signed.data))
        sigs = reader.embedded_signatures
        assert [s.field_name for s in sigs] == ["SignatureCollectivite", "SignatureAssureur"]
        for sig in sigs:
            status = validate_pdf_signature(sig, ValidationContext(trust_roots=[]))
            assert status.intact and status.valid
        (artifacts / f"countersigned-{kind}.pdf").write_bytes(signed.data)
        assert every_font_embedded(signed.data) == []  # the stamp's font too
        report = subprocess.run(
            [
                "pdfsig",
                "-nocert",
                "-",
            ],
            input=signed.data,
            capture_output=True,
            timeout=60,
        )
        if report.returncode != 0:  # older poppler reads files only
            with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
                f.write(signed.data)
                f.flush()
                report = subprocess.run(["pdfsig", f.name], capture_output=True, timeout=60)
        out = report.stdout.decode()
        assert out.count("Signature is Valid") == 2, out
    run_jobs(app)  # e-mails and archive copies, as a worker runs them
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
    events = [
        e["event"]
        for e in client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    ]
    assert events[0] == "kit_issued" and events.count("countersigned") == 2
    for name in (
        "portal_session",
        "return_received",
        "return_accepted",
        "employer_signed",
        "email_sent",
    ):
        assert name in events, name


def test_countersign_with_an_unreachable_tsa_is_a_clear_error(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    kit: dict[str, Any],
    employer_auth: dict[str, str],
    pki: Pki,
) -> None:
    for kind in PIECES:
        sign_and_upload(client, employer_auth, kit, kind, pki.trusted)
    app.extensions["psc.settings"] = type(app.extensions["psc.settings"])(
        **{**app.extensions["psc.settings"].__dict__, "signing_tsa_url": "http://127.0.0.1:9/tsa"}
    )
    assert_error(
        client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff),
        409,
        "timestamp_unavailable",
    )
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == (
        "employer_signed"
    )


# -- audit trail -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_audit_chain_detects_edits_insertions_and_deletions(
    app: Flask,
    client: FlaskClient,
    kit: dict[str, Any],
    employer_auth: dict[str, str],
) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and "intègre" in result.output
    events = client.get(f"/api/v1/kits/{kit['id']}/events", headers=auth(_staff_token(app))).json[
        "items"
    ]
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    with app.app_context():
        # the chain's first event (the employer's papers recorded, before its kit)
        first_actor = db.session.scalar(text("SELECT actor FROM audit_event WHERE id = 1"))
        if db.engine.dialect.name == "postgresql":
            # the service's role cannot rewrite history: the trigger refuses row changes
            for statement in (
                "UPDATE audit_event SET actor = 'x' WHERE id = 1",
                "DELETE FROM audit_event WHERE id = 1",
            ):
                with pytest.raises(DBAPIError, match="append-only"):
                    db.session.execute(text(statement))
                db.session.rollback()
            # someone with the owner's rights disables it: the chain still tells
            db.session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        db.session.execute(text("UPDATE audit_event SET actor = 'staff:quelquun' WHERE id = 1"))
        db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "modifié" in result.output
    with app.app_context():
        db.session.execute(
            text("UPDATE audit_event SET actor = :a WHERE id = 1"), {"a": first_actor}
        )
        db.session.commit()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    with app.app_context():
        db.session.execute(text("DELETE FROM audit_event WHERE id = 2"))
        db.session.commit()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 1


def _staff_token(app: Flask) -> str:
    from tests.conftest import create_token

    return create_token(app, "admin", "audit@assureur.fr")
