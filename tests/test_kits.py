"""Issuing kits through the API and the CLI, on SQLite and PostgreSQL, with real stores."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from pypdf import PdfReader
from sqlalchemy import inspect, select, text

from service import labels
from service.audit.models import AuditEvent
from service.backends import document_store
from service.extensions import db
from service.kits.domain import CODE_ALPHABET, next_reference, reserve_references
from service.kits.models import Kit
from tests.conftest import (
    CDG81,
    CONVENTION,
    auth,
    create_token,
    employer_payload,
    make_app,
    record_prerequisites,
)
from tests.pdftools import pdf_text
from tests.test_reference_api import assert_error

SIRET = "21810004800014"


def issue(client: FlaskClient, staff: dict[str, str], siret: str = SIRET) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{siret}/kits", headers=staff)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.json


@pytest.mark.postgres
def test_issue_kit_answers_documents_code_and_links(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    assert re.fullmatch(r"PSC-81-\d{4}-000001", kit["reference"])
    assert kit["status"] == "issued"
    code = kit["access_code"]
    assert re.fullmatch(r"([A-Z0-9]{4}-){3}[A-Z0-9]{4}", code)
    assert set(code.replace("-", "")) <= set(CODE_ALPHABET)
    assert [d["kind"] for d in kit["documents"]] == [
        "special-conditions",
        "information-notice",
        "enrolment-form",
        "beneficiary-designation",
        "membership-agreement",
        "access-letter",
    ]
    for doc in kit["documents"]:
        r = client.get(doc["pdf_url"], headers=staff)
        assert r.status_code == 200 and r.mimetype == "application/pdf"
        assert hashlib.sha256(r.data).hexdigest() == doc["sha256"]
        assert len(PdfReader(io.BytesIO(r.data)).pages) == doc["pages"]
        if doc["requires_signature"]:
            docx = client.get(doc["docx_url"], headers=staff)
            assert docx.status_code == 200 and docx.data[:2] == b"PK"
        else:
            assert doc["docx_url"] is None
    letter = client.get(kit["documents"][-1]["pdf_url"], headers=staff).data
    assert code in " ".join(pdf_text(letter))
    special = " ".join(pdf_text(client.get(kit["documents"][0]["pdf_url"], headers=staff).data))
    assert "Albi" in special and "218 100 048 00014" in special and "15,00 €" in special
    assert kit["reference"] in special

    # the code is stored only as a hash, and never shown again
    with app.app_context():
        row = db.session.scalar(select(Kit))
        assert row is not None and code.replace("-", "") not in row.access_code_hash
        assert row.access_code_hash == hashlib.sha256(code.replace("-", "").encode()).hexdigest()
        assert row.access_code_expires_at > row.issued_at
    again = client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json
    assert "access_code" not in again
    assert again["documents"] == kit["documents"]


def test_references_follow_one_sequence_per_cdg_and_year(app: Flask) -> None:
    with app.app_context():
        assert reserve_references("81", 2031, 0) == []
        assert reserve_references("81", 2031, 3) == [
            "PSC-81-2031-000001",
            "PSC-81-2031-000002",
            "PSC-81-2031-000003",
        ]
        db.session.commit()
        assert next_reference("81", 2031) == "PSC-81-2031-000004"
        db.session.rollback()  # rolled back with its transaction: the number was never taken
        assert next_reference("81", 2031) == "PSC-81-2031-000004"
        assert next_reference("81", 2032) == "PSC-81-2032-000001"
        assert next_reference("12", 2031) == "PSC-12-2031-000001"
        assert reserve_references("81", 2031, 2) == ["PSC-81-2031-000005", "PSC-81-2031-000006"]
        db.session.commit()
        db.session.remove()


def test_bundle_and_zip_downloads(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    kit = issue(client, staff)
    bundle = client.get(kit["bundle_url"], headers=staff)
    reader = PdfReader(io.BytesIO(bundle.data))
    assert len(reader.pages) == sum(d["pages"] for d in kit["documents"])
    assert len(reader.outline) == 6
    archive = zipfile.ZipFile(io.BytesIO(client.get(kit["zip_url"], headers=staff).data))
    pdfs = [n for n in archive.namelist() if n.endswith(".pdf")]
    assert len(pdfs) == 7
    for doc in kit["documents"]:
        name = next(n for n in pdfs if n.endswith(f"-{labels.file_name(doc['kind'])}.pdf"))
        assert hashlib.sha256(archive.read(name)).hexdigest() == doc["sha256"]


def test_the_zip_is_made_again_at_each_download_and_checked(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No ZIP object is written at issue (it only repeats the kit's files): each download makes
    the same bytes again, whose SHA-256 is the one recorded, from files checked one by one; a
    file altered or lost in the store gives a 503, logged and recorded as no download; a kit
    issued with a ZIP object is served from it, checked the same way."""
    kit = issue(client, staff)
    first = client.get(kit["zip_url"], headers=staff)
    second = client.get(kit["zip_url"], headers=staff)
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/zip"
    assert first.data == second.data
    with app.app_context():
        store = document_store()
        row = db.session.get(Kit, kit["id"])
        assert row is not None and row.zip_key == ""
        assert hashlib.sha256(first.data).hexdigest() == row.zip_sha256
        folder = row.bundle_key.rsplit("/", 1)[0]
        keys = [info.key for info in store.list(folder)]
        assert len(keys) == 6 + 2 + 1 and not any(key.endswith(".zip") for key in keys)
        notice = next(d for d in row.documents if d.kind == "information-notice")
        original, bundle = store.get(notice.pdf_key), store.get(row.bundle_key)
        store.put(notice.pdf_key, original + b"%altered\n", overwrite=True)
    downloads = _downloads(app, kit["id"])
    with caplog.at_level(logging.ERROR, logger="service.kits.domain"):
        assert_error(client.get(kit["zip_url"], headers=staff), 503, "kit_files_altered")
    assert f"{kit['reference']}: {notice.pdf_key} altered" in caplog.text
    with app.app_context():
        store = document_store()
        store.put(notice.pdf_key, original, overwrite=True)
        store.delete(row.bundle_key)
    assert_error(client.get(kit["zip_url"], headers=staff), 503, "kit_files_altered")
    assert _downloads(app, kit["id"]) == downloads  # refused: not recorded as downloaded
    with app.app_context():
        document_store().put(row.bundle_key, bundle, overwrite=True)
        # the ZIP's format changed since the issue (a Python upgrade): the intact files are
        # served, the download records what was served
        kit_row = db.session.get(Kit, kit["id"])
        assert kit_row is not None
        kit_row.zip_sha256 = "0" * 64
        db.session.commit()
    assert client.get(kit["zip_url"], headers=staff).data == first.data
    assert _download_hashes(app, kit["id"])[-1] == hashlib.sha256(first.data).hexdigest()
    with app.app_context():
        # a kit issued before the ZIP was made on download: its ZIP object, checked
        document_store().put(f"{folder}/kit.zip", b"PK kept", overwrite=True)
        kit_row = db.session.get(Kit, kit["id"])
        assert kit_row is not None
        kit_row.zip_key = f"{folder}/kit.zip"
        kit_row.zip_sha256 = hashlib.sha256(b"PK kept").hexdigest()
        db.session.commit()
    assert client.get(kit["zip_url"], headers=staff).data == b"PK kept"


def _download_hashes(app: Flask, kit_id: int) -> list[str | None]:
    with app.app_context():
        return [
            event.sha256_after
            for event in db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.kit_id == kit_id, AuditEvent.event == "downloaded")
                .order_by(AuditEvent.id)
            )
        ]


def _downloads(app: Flask, kit_id: int) -> int:
    with app.app_context():
        return len(
            db.session.scalars(
                select(AuditEvent).where(
                    AuditEvent.kit_id == kit_id, AuditEvent.event == "downloaded"
                )
            ).all()
        )


@pytest.mark.postgres
def test_issuing_again_supersedes_the_open_kit(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    first = issue(client, staff)
    second = issue(client, staff)
    assert second["reference"].endswith("000002")
    assert client.get(f"/api/v1/kits/{first['id']}", headers=staff).json["status"] == "superseded"
    current = client.get(f"/api/v1/employers/{SIRET}", headers=staff).json
    assert current["kit"]["id"] == second["id"] and current["kit_status"] == "issued"
    assert second["access_code"] != first["access_code"]


def test_kit_errors_and_scopes(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    assert_error(
        client.post("/api/v1/employers/21810001400016/kits", headers=staff), 404, "unknown_employer"
    )
    kit = issue(client, staff)
    assert_error(
        client.get(f"/api/v1/kits/{kit['id']}/documents/nope.pdf", headers=staff),
        404,
        "unknown_document",
    )
    assert_error(
        client.get(f"/api/v1/kits/{kit['id']}/documents/access-letter.docx", headers=staff),
        404,
        "no_docx_version",
    )
    assert_error(client.get("/api/v1/kits/999999", headers=staff), 404, "unknown_kit")
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=own).status_code == 200
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    other = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    for url in (f"/api/v1/kits/{kit['id']}", kit["bundle_url"], kit["documents"][0]["pdf_url"]):
        assert_error(client.get(url, headers=other), 404, "unknown_kit")
    assert_error(client.post(f"/api/v1/employers/{SIRET}/kits", headers=own), 403, "forbidden")


@pytest.mark.postgres
def test_kit_status_filter_in_listing(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    issue(client, staff)
    assert client.get("/api/v1/employers?status=issued", headers=staff).json["total"] == 1
    assert client.get("/api/v1/employers?status=none", headers=staff).json["total"] == 0


@pytest.mark.postgres
def test_cli_issues_a_whole_cdg_with_a_progress_bar(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    sirets = ["21810004800014", "21810001400016", "20003402300016"]
    names = ["Albi", "Aguts", "CC Tarn-Agout"]
    for siret, name in zip(sirets, names, strict=True):
        r = client.post(
            "/api/v1/employers",
            json=employer_payload(convention["id"], siret=siret, name=name),
            headers=staff,
        )
        assert r.status_code == 201
    record_prerequisites(app, *sirets)
    issue(client, staff, sirets[0])  # already has one: skipped by the batch
    runner = app.test_cli_runner()
    result = runner.invoke(args=["kits", "issue", "--cdg", "81", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "Kits du CDG 81" in result.output  # the bar itself draws only on a terminal
    assert "2 kits émis, 0 échec." in result.output
    listing = client.get("/api/v1/employers?status=issued", headers=staff).json
    assert listing["total"] == 3
    refs = sorted(e["kit"]["reference"] for e in listing["items"])
    assert len(set(refs)) == 3
    for item in listing["items"]:
        kit = client.get(f"/api/v1/kits/{item['kit']['id']}", headers=staff).json
        text = " ".join(pdf_text(client.get(kit["documents"][0]["pdf_url"], headers=staff).data))
        assert item["name"] in text and kit["reference"] in text

    result = runner.invoke(args=["kits", "issue", "--cdg", "81"])
    assert "ont déjà un kit" in result.output
    result = runner.invoke(args=["kits", "issue", "--siret", sirets[1]])
    assert result.exit_code == 0 and "Code d'accès" in result.output
    result = runner.invoke(args=["kits", "issue", "--cdg", "99"])
    assert result.exit_code == 1 and "unknown_cdg" in result.output


@pytest.mark.postgres
def test_migration_0016_keeps_every_kit_zip_downloadable(own_database: str, tmp_path: Path) -> None:
    """Down to 0015 (the day of issue dropped) and up again: a kit issued without a ZIP object
    still has its ZIP made at download, with the recorded fingerprint."""
    app = make_app(own_database, tmp_path)
    client = app.test_client()
    staff = auth(create_token(app, "staff", "prod@assureur.fr"))
    client.post("/api/v1/cdgs", json=CDG81, headers=staff)
    convention = client.post("/api/v1/conventions", json=CONVENTION, headers=staff).json
    client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    record_prerequisites(app, SIRET)
    kit = issue(client, staff)
    before = client.get(kit["zip_url"], headers=staff).data
    with app.app_context():
        db.session.remove()
        downgrade(revision="0015_prerequisite_history")
        assert db.session.execute(text("SELECT zip_key FROM kit")).scalar_one() == ""
        assert "issued_on" not in {c["name"] for c in inspect(db.engine).get_columns("kit")}
        db.session.remove()
        upgrade()
    again = client.get(kit["zip_url"], headers=staff)
    assert again.status_code == 200 and again.data == before
