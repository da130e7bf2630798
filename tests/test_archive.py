"""The CDG archive on moto's S3 server (Object Lock bucket), outages, crashes, verification."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from service.archive.domain import ARCHIVE_NAMES, archive_copy, archive_policy, file_name
from service.archive.models import ArchiveRecord
from service.backends import archive_store, document_store
from service.engine.models import Job
from service.extensions import db
from tests.conftest import auth, create_token, make_app, make_bucket, record_prerequisites, run_jobs
from tests.pki import Pki, sign_pdf
from tests.test_reference_api import assert_error
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"archive-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_endpoint, name, lock=True)
    return name


@pytest.fixture
def app_config(moto_endpoint: str, bucket: str) -> dict[str, str]:
    return {"ARCHIVE_STORE": f"s3://{bucket}/cdg", "S3_ENDPOINT_URL": moto_endpoint}


@pytest.fixture
def down_app(database_url: str, tmp_path: Path, trust_roots: Path, bucket: str) -> Flask:
    """The same instance as `app`, but its archive endpoint does not answer."""
    return make_app(
        database_url,
        tmp_path,
        SIGNING_TRUST_ROOTS=str(trust_roots),
        ARCHIVE_STORE=f"s3://{bucket}/cdg",
        S3_ENDPOINT_URL="http://127.0.0.1:9",
    )


def signed_kit(
    client: FlaskClient, staff: dict[str, str], pki: Pki, siret: str = SIRET
) -> dict[str, Any]:
    kit = client.post(f"/api/v1/employers/{siret}/kits", headers=staff).json
    employer = auth(portal(client, kit["access_code"], siret=siret).json["token"])
    for kind in PIECES:
        r = upload(
            client,
            employer,
            kit,
            kind,
            sign_pdf(issued_pdf(client, employer, kit, kind), pki.trusted),
        )
        assert r.json["status"] == "accepted"
    return kit


def countersign(client: FlaskClient, staff: dict[str, str], kit: dict[str, Any]) -> None:
    """Countersign through the API, then run the jobs it wrote, as a worker does."""
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200 and r.json["status"] == "countersigned", r.json
    assert run_jobs(client.application)[1] == 0


def archive_jobs(app: Flask) -> list[Job]:
    with app.app_context():
        jobs = db.session.scalars(
            select(Job).filter_by(task="psc.archive.copy").order_by(Job.id)
        ).all()
        db.session.expunge_all()
        return list(jobs)


def s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-3")


@pytest.mark.postgres
def test_countersigned_pieces_are_archived_under_retention(
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    moto_endpoint: str,
    bucket: str,
) -> None:
    kit = signed_kit(client, staff, pki)
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    # nothing archived in the request: one job per piece, the manifest's once they are done
    assert r.status_code == 200 and r.json["status"] == "countersigned"
    assert client.get("/api/v1/archive?cdg=81", headers=staff).json["items"] == []
    jobs = archive_jobs(client.application)
    assert sorted(j.payload["kind"] for j in jobs) == sorted(PIECES)
    assert {j.status for j in jobs} == {"pending"}
    assert run_jobs(client.application)[1] == 0
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
    assert [j.payload["kind"] for j in archive_jobs(client.application)][-1] == "manifest"
    items = client.get("/api/v1/archive?cdg=81", headers=staff).json["items"]
    assert sorted(i["kind"] for i in items) == sorted(["manifest", *PIECES, "proof"])
    client_s3 = s3(moto_endpoint)
    for item in items:
        name = ARCHIVE_NAMES.get(item["kind"]) or f"{file_name(item['kind'])}.pdf"
        key = f"cdg/81/CDG81-PREV-2025-2030/{SIRET}/{kit['reference']}/{name}"
        head = client_s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockRetainUntilDate"].year == 2040  # convention end + 10 years
        assert head["Metadata"]["sha256"] == item["sha256"]
        assert head["Metadata"]["kit-reference"] == kit["reference"]
        body = client_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == item["sha256"]
        assert item["retain_until"].startswith("2040-12-31")
    manifest_item = next(i for i in items if i["kind"] == "manifest")
    content = client.get(manifest_item["content_url"], headers=staff)
    assert content.status_code == 302
    assert "X-Amz-Expires=300" in content.location
    with urllib.request.urlopen(content.location, timeout=10) as answer:
        manifest = json.loads(answer.read())
    assert manifest["kit_reference"] == kit["reference"]
    assert {d["kind"]: d["sha256"] for d in manifest["documents"]} == {
        i["kind"]: i["sha256"] for i in items if i["kind"] not in ("manifest", "proof")
    }
    assert len(manifest["audit_last_hash"]) == 64
    events = [
        e["event"]
        for e in client.get(f"/api/v1/kits/{kit['id']}/events", headers=staff).json["items"]
    ]
    assert events.count("archived") == 4 and "kit_archived" in events
    # the countersigned copy served to the employer is the archived one
    signed = client.get(f"/api/v1/kits/{kit['id']}/documents/{PIECES[0]}/signed.pdf", headers=staff)
    piece = next(i for i in items if i["kind"] == PIECES[0])
    assert hashlib.sha256(signed.data).hexdigest() == piece["sha256"]


def test_other_bytes_under_an_archive_key_stop_that_copy_for_staff(
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    moto_endpoint: str,
    bucket: str,
) -> None:
    """A different object already at a piece's key: no retry can help, the job fails at once
    with its French reason (409 `archive_conflict` inside the job) and nothing is recorded."""
    kit = signed_kit(client, staff, pki)
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200 and r.json["status"] == "countersigned", r.json
    piece = PIECES[0]
    key = f"cdg/81/CDG81-PREV-2025-2030/{SIRET}/{kit['reference']}/{file_name(piece)}.pdf"
    s3(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7 autre chose")
    run_jobs(client.application)
    job = next(j for j in archive_jobs(client.application) if j.payload["kind"] == piece)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == "Une autre copie est déjà archivée sous cette clé : archivage arrêté."
    items = client.get("/api/v1/archive?cdg=81", headers=staff).json["items"]
    assert piece not in [i["kind"] for i in items] and "manifest" not in [i["kind"] for i in items]
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "countersigned"


def test_cdg_sees_only_its_archive_with_pagination(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    kit = signed_kit(client, staff, pki)
    countersign(client, staff, kit)
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    client.post(
        "/api/v1/cdgs", json={"code": "82", "name": "CDG 82", "email": "a@cdg82.fr"}, headers=staff
    )
    other = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    page = client.get("/api/v1/archive?limit=2", headers=own).json
    assert len(page["items"]) == 2 and page["next"] is not None
    rest = client.get(f"/api/v1/archive?limit=2&after={page['next']}", headers=own).json
    assert len(rest["items"]) == 2 and rest["next"] is None
    first = page["items"][0]
    assert client.get("/api/v1/archive?cdg=81", headers=other).json["items"] == []
    assert client.get("/api/v1/archive", headers=other).json["items"] == []
    for url in (f"/api/v1/archive/{first['id']}", first["content_url"]):
        assert_error(client.get(url, headers=other), 404, "unknown_archive")
    assert client.get(first["content_url"], headers=own).status_code == 302
    assert_error(client.get("/api/v1/cdgs/81/tracking.csv", headers=other), 404, "unknown_cdg")
    assert_error(client.get("/api/v1/archive", headers=staff), 422, "cdg_required")


def test_storage_down_during_countersign_then_retry_archives(
    down_app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    down = down_app
    kit = signed_kit(client, staff, pki)
    r = down.test_client().post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    assert r.status_code == 200, r.json
    assert r.json["status"] == "countersigned"  # the user sees no error; archive pending
    # a worker tries: the store does not answer, the jobs stay pending with a retry planned
    run_jobs(down)
    jobs = archive_jobs(down)
    assert len(jobs) == 2 and {j.status for j in jobs} == {"pending"}
    assert all(j.attempts == 1 and j.last_error for j in jobs)
    assert all(j.next_attempt_at > j.created_at for j in jobs)
    assert down.test_cli_runner().invoke(args=["archive", "retry"]).exit_code == 1
    # storage is back: a retry archives everything
    result = client.application.test_cli_runner().invoke(args=["archive", "retry"])
    assert result.exit_code == 0, result.output
    assert "3 copies archivées" in result.output
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"


@pytest.mark.postgres
def test_crash_between_upload_and_record_converges_without_duplicate(
    down_app: Flask,
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    moto_endpoint: str,
    bucket: str,
) -> None:
    down = down_app
    kit = signed_kit(client, staff, pki)
    down.test_client().post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    with app.app_context():
        job = next(
            j
            for j in db.session.scalars(select(Job).filter_by(task="psc.archive.copy"))
            if j.payload["kind"] == PIECES[0]
        )
        archive_copy(
            job, documents=document_store(), archive=archive_store(), policy=archive_policy()
        )
        db.session.rollback()  # the process "dies" after the upload, before the commit
        assert db.session.scalar(select(ArchiveRecord)) is None
    assert app.test_cli_runner().invoke(args=["archive", "retry"]).exit_code == 0
    key = f"cdg/81/CDG81-PREV-2025-2030/{SIRET}/{kit['reference']}/{file_name(PIECES[0])}.pdf"
    versions = s3(moto_endpoint).list_object_versions(Bucket=bucket, Prefix=key)
    assert len(versions.get("Versions", [])) == 1
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
    assert app.test_cli_runner().invoke(args=["archive", "retry"]).output.startswith("0 copie")
    result = app.test_cli_runner().invoke(args=["archive", "verify"])
    assert result.exit_code == 0 and "4 copies relues, 0 écart" in result.output


@pytest.mark.parametrize("app_config", [{}])
def test_archive_verify_detects_changed_and_missing_copies(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
    tmp_path: Path,
) -> None:
    kit = signed_kit(client, staff, pki)
    countersign(client, staff, kit)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["archive", "verify", "--sample", "2"]).exit_code == 0
    folder = tmp_path / "instance" / "archive" / "81" / "CDG81-PREV-2025-2030" / SIRET
    piece = folder / kit["reference"] / f"{file_name(PIECES[0])}.pdf"
    original = piece.read_bytes()
    piece.write_bytes(original + b"%")
    result = runner.invoke(args=["archive", "verify"])
    assert result.exit_code == 1 and "empreinte" in result.output
    piece.unlink()
    result = runner.invoke(args=["archive", "verify"])
    assert result.exit_code == 1 and "absent" in result.output
    # locally, content is streamed (no presigned URL)
    item = client.get("/api/v1/archive?cdg=81", headers=staff).json["items"][1]
    r = client.get(item["content_url"], headers=staff)
    assert r.status_code == 200 and hashlib.sha256(r.data).hexdigest() == item["sha256"]


@pytest.mark.parametrize("app_config", [{}])
def test_tracking_csv_opens_in_a_french_spreadsheet(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    pki: Pki,
) -> None:
    from tests.conftest import employer_payload

    client.post(
        "/api/v1/employers",
        json=employer_payload(
            employer["convention_id"],
            siret="21810001400016",
            name="Aguts",
            contribution={
                "mode": "by_category",
                "amounts": {"A": "7", "B": "12.5", "C": "18"},
                "criteria": "Catégorie hiérarchique ; revenus modestes",
            },
        ),
        headers=staff,
    )
    kit = signed_kit(client, staff, pki)
    countersign(client, staff, kit)
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    r = client.get("/api/v1/cdgs/81/tracking.csv", headers=own)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:5] == ["SIRET", "Collectivité", "Type", "Effectif", "Statut du kit"]
    by_name = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_name["Albi"]["Statut du kit"] == "Archivé"
    assert by_name["Albi"]["Montant forfaitaire"] == "15,00"
    assert by_name["Albi"]["Archivé le"] and by_name["Albi"]["Contresigné le"]
    assert by_name["Aguts"]["Statut du kit"] == "Pas de kit"
    assert (by_name["Aguts"]["Montant A"], by_name["Aguts"]["Montant B"]) == ("7,00", "12,50")
    assert by_name["Aguts"]["Critères de modulation"] == "Catégorie hiérarchique ; revenus modestes"


def test_documents_on_s3_and_a_storage_outage_during_upload(
    database_url: str, tmp_path: Path, trust_roots: Path, pki: Pki
) -> None:
    """Kits issued onto S3; when the store dies, an upload gets a clean 503 and leaves no row."""
    from moto.server import ThreadedMotoServer

    from tests.conftest import CDG81, CONVENTION, employer_payload

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    documents = f"documents-{uuid.uuid4().hex[:10]}"
    make_bucket(endpoint, documents, lock=False)
    app = make_app(
        database_url,
        tmp_path,
        SIGNING_TRUST_ROOTS=str(trust_roots),
        DOCUMENT_STORE=f"s3://{documents}/kits",
        S3_ENDPOINT_URL=endpoint,
    )
    try:
        client = app.test_client()
        staff = auth(create_token(app, "staff", "s3@assureur.fr"))
        client.post("/api/v1/cdgs", json=CDG81, headers=staff)
        convention = client.post("/api/v1/conventions", json=CONVENTION, headers=staff).json
        client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
        record_prerequisites(client.application, SIRET)
        kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
        pdf = client.get(kit["documents"][0]["pdf_url"], headers=staff).data
        assert hashlib.sha256(pdf).hexdigest() == kit["documents"][0]["sha256"]
        stored = s3(endpoint).list_objects_v2(Bucket=documents)["Contents"]
        papers = [o for o in stored if "/prerequisites/" in o["Key"]]
        assert len(papers) == 4  # the employer's prerequisites, on S3 too
        assert len(stored) - len(papers) == 6 + 2 + 1  # PDFs, DOCX, bundle (no ZIP object)
        archive = client.get(kit["zip_url"], headers=staff)  # made from the files on S3
        assert (
            archive.status_code == 200
            and len(zipfile.ZipFile(io.BytesIO(archive.data)).namelist()) == 9
        )
        employer = auth(portal(client, kit["access_code"]).json["token"])
        signed = sign_pdf(pdf, pki.trusted)
        server.stop()
        r = upload(client, employer, kit, PIECES[0], signed)
        assert_error(r, 503, "unavailable")
        assert client.get("/api/v1/health").json["storage"] != "ok"
        assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["returns"] == []
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        from tests.conftest import _reset

        _reset(app)


@pytest.mark.postgres
def test_migration_moves_waiting_archive_jobs_into_the_engine_and_back(
    own_database: str, tmp_path: Path, trust_roots: Path, pki: Pki
) -> None:
    """0010 moves pending archive_job rows into job (and its downgrade moves them back): on a
    database of its own, so that going down and up again touches no other test."""
    from flask_migrate import downgrade, upgrade

    from tests.conftest import CDG81, CONVENTION, ROOT, employer_payload

    app = make_app(own_database, tmp_path, SIGNING_TRUST_ROOTS=str(trust_roots))
    migration = ROOT / "migrations" / "versions" / "0010_archive_jobs.py"
    before = next(
        line.split("=", 1)[1].strip().strip("\"'")
        for line in migration.read_text().splitlines()
        if line.startswith("down_revision")
    )
    client = app.test_client()
    staff = auth(create_token(app, "staff", "prod@assureur.fr"))
    client.post("/api/v1/cdgs", json=CDG81, headers=staff)
    convention = client.post("/api/v1/conventions", json=CONVENTION, headers=staff).json
    client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    record_prerequisites(client.application, SIRET)
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff).json
    employer = auth(portal(client, kit["access_code"]).json["token"])
    for kind in PIECES:
        data = sign_pdf(issued_pdf(client, employer, kit, kind), pki.trusted)
        assert upload(client, employer, kit, kind, data).json["status"] == "accepted"
    assert client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff).status_code == 200
    with app.app_context():
        db.session.remove()
        downgrade(revision=before)
        rows = db.session.execute(text("SELECT kind, status FROM archive_job ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(k, "pending") for k in (*PIECES, "manifest")]
        db.session.remove()
        upgrade()
    jobs = archive_jobs(app)
    assert [j.payload["kind"] for j in jobs] == [*PIECES, "manifest"]
    assert all(j.payload["pieces"] == list(PIECES) for j in jobs)
    assert len(jobs[-1].payload["audit_last_hash"]) == 64
    assert run_jobs(app)[1] == 0
    assert client.get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"] == "archived"
    assert [j.payload["kind"] for j in archive_jobs(app)] == [*PIECES, "manifest"]
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
