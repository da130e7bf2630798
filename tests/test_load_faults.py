"""Load and faults: the audit chain under concurrency, slow clients, a hung store, quarantine."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select

from service import create_app
from service.audit.domain import GENESIS, record, verify_chain
from service.audit.models import AuditEvent, AuditHead
from service.backends import document_store, settings
from service.engine.models import Job
from service.extensions import db
from service.kits.models import KitDocument
from service.returns.models import KitReturn
from storage import StorageUnavailable, Timeouts, open_store
from tests.conftest import (
    CDG81,
    CONVENTION,
    _reset,
    auth,
    create_token,
    employer_payload,
    make_app,
    make_bucket,
    record_prerequisites,
    run_jobs,
)
from tests.pki import Pki, sign_pdf
from tests.test_archive import signed_kit
from tests.test_returns import PIECES, SIRET, issued_pdf, portal, upload

# -- the audit chain stays linear under processes x threads ---------------------------------

PROCESSES, THREADS, EVENTS = 3, 4, 12


def _hammer(database_url: str, instance: str, start: Any, worker: int) -> None:
    """One process: its own app (own engine and pool), THREADS threads appending EVENTS each."""
    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": instance})
    errors: list[BaseException] = []

    def thread(n: int) -> None:
        try:
            for i in range(EVENTS):
                with app.app_context():
                    record("document_downloaded", actor=f"p{worker}t{n}", details={"i": i})
                    db.session.commit()
        except BaseException as exc:  # reported through the exit code
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(THREADS)]
    start.wait(timeout=60)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} thread(s) failed: {errors[0]!r}")


@pytest.mark.postgres
def test_audit_chain_linear_under_processes_and_threads(app: Flask, tmp_path: Path) -> None:
    with app.app_context():
        record("kit_issued", actor="staff:test")
        db.session.commit()
        db.engine.dispose()  # no pooled connection shared with the forked children
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_hammer, args=(url, str(tmp_path / f"i{n}"), start, n))
        for n in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with app.app_context():
        assert verify_chain() == []
        count = db.session.scalar(select(func.count()).select_from(AuditEvent))
        assert count == 1 + PROCESSES * THREADS * EVENTS
        prevs = db.session.scalars(select(AuditEvent.prev_hash)).all()
        assert len(set(prevs)) == len(prevs)  # no two events share a predecessor


@pytest.mark.postgres
def test_audit_events_in_one_transaction_chain_and_the_head_is_recreated(app: Flask) -> None:
    with app.app_context():
        db.session.execute(delete(AuditHead))  # an emptied database: no head row yet
        db.session.commit()
        first = record("kit_issued", actor="staff:test")
        second = record("document_downloaded", actor="staff:test")
        db.session.commit()
        assert second.prev_hash == first.hash and first.prev_hash == GENESIS
        assert verify_chain() == []
        head = db.session.get(AuditHead, 1)
        assert head is not None and (head.count, head.last_hash) == (2, second.hash)


# -- slow clients cannot starve the server ------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen[bytes], deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The real server command of `make run` on a free loopback port, with 4 threads."""
    port, threads = free_port(), 4
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "THREADS": str(threads),
        "VENV_BIN": str(Path(sys.executable).parent),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.sqlite3'}",
    }
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "serve.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/api/v1/health", proc)
        yield port, threads
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_health_answers_while_slow_uploads_outnumber_threads(served: tuple[int, int]) -> None:
    port, threads = served
    slow: list[socket.socket] = []
    try:
        for _ in range(threads * 3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(
                b"POST /api/v1/kits/1/documents/special-conditions/returns HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nAuthorization: Bearer psc_x\r\n"
                b"Content-Type: application/pdf\r\nContent-Length: 5000000\r\n\r\n%PDF-1.7\n"
            )
            slow.append(s)
        time.sleep(0.5)  # every slow client is connected and has started its body
        for s in slow:
            s.sendall(b"0" * 1024)  # still trickling
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
            body = json.loads(r.read())
        assert time.monotonic() - started < 2
        assert r.status == 200 and body["status"] == "ok"
    finally:
        for s in slow:
            s.close()


def test_make_run_prints_the_address_it_serves() -> None:
    out = subprocess.run(
        ["make", "-n", "run", "HOST=127.0.0.2", "PORT=9123"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "http://127.0.0.2:9123" in out
    assert "scripts/serve.sh" in out


# -- a hung store: bounded calls, a quick countersignature, a truthful health check ---------


class HungServer:
    """Accepts TCP connections on loopback and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.stop()


def test_s3_store_calls_are_bounded_when_the_server_never_answers(hung: HungServer) -> None:
    store = open_store(
        "s3://archive/cdg",
        s3_endpoint_url=hung.url,
        timeouts=Timeouts(connect=0.5, read=0.5, attempts=2),
    )
    for call in (store.ping, lambda: store.get("a.pdf"), lambda: store.put("a.pdf", b"x")):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            call()
        assert time.monotonic() - started < 4  # 2 attempts of 0.5 s (1 s with a body)
    assert len(hung.held) >= 2  # the server was reached: it is the answer that never came


@pytest.fixture
def hung_archive_app(
    database_url: str, tmp_path: Path, trust_roots: Path, hung: HungServer
) -> Iterator[Flask]:
    """Documents in the local folder; the archive on an S3 endpoint that never answers."""
    application = make_app(
        database_url,
        tmp_path,
        SIGNING_TRUST_ROOTS=str(trust_roots),
        ARCHIVE_STORE="s3://archive-hung/cdg",
        S3_ENDPOINT_URL=hung.url,
        HEALTH_TIMEOUT="1",
        STORE_CONNECT_TIMEOUT="1",
        STORE_READ_TIMEOUT="2",
        STORE_MAX_ATTEMPTS="1",
    )
    try:
        yield application
    finally:
        _reset(application)


def test_countersign_answers_quickly_while_the_archive_hangs_then_retry_archives(
    hung_archive_app: Flask,
    database_url: str,
    tmp_path: Path,
    trust_roots: Path,
    pki: Pki,
    moto_endpoint: str,
) -> None:
    client = hung_archive_app.test_client()
    staff = auth(create_token(hung_archive_app, "staff", "prod@assureur.fr"))
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=CONVENTION, headers=staff).json
    client.post("/api/v1/employers", json=employer_payload(convention["id"]), headers=staff)
    record_prerequisites(hung_archive_app, SIRET)
    kit = signed_kit(client, staff, pki)

    started = time.monotonic()
    r = client.post(f"/api/v1/kits/{kit['id']}/countersign", headers=staff)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.json
    assert r.json["status"] == "countersigned"
    assert elapsed < 10, elapsed  # the request never touches the archive store
    # a worker's attempt: each call bounded, the jobs stay pending with a retry planned
    started = time.monotonic()
    run_jobs(hung_archive_app)
    assert time.monotonic() - started < 30
    with hung_archive_app.app_context():
        jobs = db.session.scalars(select(Job).filter_by(task="psc.archive.copy")).all()
        assert len(jobs) == 2 and {j.status for j in jobs} == {"pending"}
        assert all(j.attempts == 1 and j.last_error for j in jobs)  # each says why
        assert all(j.next_attempt_at > j.created_at for j in jobs)

    # the store is back (another endpoint here): `flask archive retry` sends the copies
    bucket = f"archive-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_endpoint, bucket, lock=True)
    later = make_app(
        database_url,
        tmp_path,
        SIGNING_TRUST_ROOTS=str(trust_roots),
        ARCHIVE_STORE=f"s3://{bucket}/cdg",
        S3_ENDPOINT_URL=moto_endpoint,
    )
    out = later.test_cli_runner().invoke(args=["archive", "retry"])
    assert out.exit_code == 0, out.output
    assert "3 copies archivées, 0 échec" in out.output
    assert (
        later.test_client().get(f"/api/v1/kits/{kit['id']}", headers=staff).json["status"]
        == "archived"
    )


@pytest.mark.postgres
def test_health_reports_each_component_and_503_when_the_archive_hangs(
    hung_archive_app: Flask,
) -> None:
    client = hung_archive_app.test_client()
    started = time.monotonic()
    r = client.get("/api/v1/health")
    assert time.monotonic() - started < 3
    assert r.status_code == 503
    assert r.json["status"] == "degraded"
    assert r.json["database"] == "ok" and r.json["documents"] == "ok"
    assert r.json["archive"] != "ok" and r.json["storage"] == r.json["archive"]


def test_health_reports_an_unreachable_database(tmp_path: Path) -> None:
    app = create_app(
        {
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/psc",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "HEALTH_TIMEOUT": "2",
        }
    )
    r = app.test_client().get("/api/v1/health")
    assert r.status_code == 503
    assert r.json["database"] == "injoignable"
    assert r.json["documents"] == "ok" and r.json["archive"] == "ok"


# -- upload copies: nothing piles up, volume bounded per kit --------------------------------

QUOTA = 3


@pytest.fixture
def app_config() -> dict[str, str]:
    return {"UPLOAD_QUOTA_COUNT": str(QUOTA), "UPLOAD_QUOTA_MB": "5"}


@pytest.fixture
def issued(client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert r.status_code == 201, r.json
    return r.json


@pytest.fixture
def employer_token(client: FlaskClient, issued: dict[str, Any]) -> dict[str, str]:
    r = portal(client, issued["access_code"])
    assert r.status_code == 200, r.json
    return auth(r.json["token"])


def upload_copies(app: Flask) -> set[str]:
    with app.app_context():
        store = document_store()
        return {info.key for p in ("quarantine/", "returns/") for info in store.list(p)}


def return_keys(app: Flask) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(KitReturn.storage_key)))


def test_uploads_leave_only_the_copies_their_rows_refer_to(
    app: Flask,
    client: FlaskClient,
    issued: dict[str, Any],
    employer_token: dict[str, str],
    pki: Pki,
) -> None:
    pdf = issued_pdf(client, employer_token, issued, PIECES[0])
    accepted = upload(client, employer_token, issued, PIECES[0], sign_pdf(pdf, pki.trusted))
    assert accepted.status_code == 201 and accepted.json["status"] == "accepted"
    refused = upload(client, employer_token, issued, PIECES[1], b"pas un PDF")
    assert refused.status_code == 422
    keys = return_keys(app)
    assert len(keys) == 2
    assert upload_copies(app) == keys  # the accepted upload's quarantine copy is gone
    assert sorted(k.split("/")[0] for k in keys) == ["quarantine", "returns"]  # refused, accepted


def test_an_upload_failing_after_quarantine_leaves_no_copy(
    app: Flask,
    client: FlaskClient,
    issued: dict[str, Any],
    employer_token: dict[str, str],
    pki: Pki,
) -> None:
    pdf = issued_pdf(client, employer_token, issued, PIECES[0])
    with app.app_context():  # the issued document vanished from the store: a storage fault
        doc = db.session.scalar(select(KitDocument).where(KitDocument.kind == PIECES[0]))
        assert doc is not None
        document_store().delete(doc.pdf_key)
    r = upload(client, employer_token, issued, PIECES[0], sign_pdf(pdf, pki.trusted))
    assert r.status_code == 503 and r.json["error"]["code"] == "unavailable"
    assert return_keys(app) == set()
    assert upload_copies(app) == set()


def test_sweep_removes_old_copies_no_row_refers_to(
    app: Flask,
    client: FlaskClient,
    issued: dict[str, Any],
    employer_token: dict[str, str],
) -> None:
    assert upload(client, employer_token, issued, PIECES[1], b"pas un PDF").status_code == 422
    kept = return_keys(app)
    with app.app_context():  # what a process killed between the copy and the commit leaves
        store = document_store()
        ref = issued["reference"]
        for key in (f"quarantine/{ref}/{PIECES[0]}/old.pdf", f"returns/{ref}/{PIECES[0]}/old.pdf"):
            store.put(key, b"%PDF-1.7 orphan")
            path = Path(settings().document_store.removeprefix("file://")) / key
            os.utime(path, (time.time() - 7200, time.time() - 7200))
        store.put(f"quarantine/{ref}/{PIECES[0]}/fresh.pdf", b"%PDF-1.7 in flight")
        for key in kept:  # the refused upload's own copy is old too, but a row refers to it
            path = Path(settings().document_store.removeprefix("file://")) / key
            os.utime(path, (time.time() - 7200, time.time() - 7200))
    out = app.test_cli_runner().invoke(args=["returns", "sweep", "--older-than", "60"])
    assert out.exit_code == 0, out.output
    assert "2 copies orphelines supprimées" in out.output
    assert upload_copies(app) == kept | {f"quarantine/{ref}/{PIECES[0]}/fresh.pdf"}
    # beat's hourly task does the same (QUARANTINE_MAX_AGE_MINUTES, 60 by default)
    with app.app_context():
        path = Path(settings().document_store.removeprefix("file://"))
    os.utime(path / f"quarantine/{ref}/{PIECES[0]}/fresh.pdf", (time.time() - 7200,) * 2)
    assert app.extensions["celery"].tasks["psc.returns.sweep_uploads"]() == 1
    assert upload_copies(app) == kept


@pytest.mark.postgres
def test_upload_quota_per_kit_and_hour_in_number_then_in_bytes(
    app: Flask, client: FlaskClient, issued: dict[str, Any], employer_token: dict[str, str]
) -> None:
    for _ in range(QUOTA):
        assert upload(client, employer_token, issued, PIECES[0], b"pas un PDF").status_code == 422
    r = upload(client, employer_token, issued, PIECES[0], b"pas un PDF")
    assert r.status_code == 429
    assert r.json["error"]["code"] == "upload_quota_exceeded"
    assert (
        "Trop de dépôts pour ce kit en une heure (3 fichiers ou 5 Mo au plus)"
        in (r.json["error"]["message"])
    )
    assert len(return_keys(app)) == QUOTA  # the refused attempt left neither row nor copy
    assert upload_copies(app) == return_keys(app)

    with app.app_context():  # an hour later, the count is free again, not the bytes
        for ret in db.session.scalars(select(KitReturn)):
            ret.uploaded_at -= timedelta(minutes=61)
        db.session.commit()
    big = b"x" * (3 * 1024 * 1024)
    assert upload(client, employer_token, issued, PIECES[0], big).status_code == 422
    r = upload(client, employer_token, issued, PIECES[0], big)  # 6 Mo > 5 Mo in the hour
    assert r.status_code == 429 and r.json["error"]["code"] == "upload_quota_exceeded"


def _upload_then_die(app: Flask, headers: dict[str, str], kit: dict[str, Any], data: bytes) -> None:
    upload(app.test_client(), headers, kit, PIECES[0], data)


@pytest.mark.postgres
def test_sweep_after_a_kill_9_during_an_upload(
    app: Flask,
    client: FlaskClient,
    issued: dict[str, Any],
    employer_token: dict[str, str],
    pki: Pki,
) -> None:
    signed = sign_pdf(issued_pdf(client, employer_token, issued, PIECES[0]), pki.trusted)
    with app.app_context():
        quarantine = Path(settings().document_store.removeprefix("file://")) / "quarantine"
        db.engine.dispose()  # no pooled connection shared with the forked child
    child = multiprocessing.get_context("fork").Process(
        target=_upload_then_die, args=(app, employer_token, issued, signed)
    )
    child.start()
    end = time.monotonic() + 30
    while time.monotonic() < end and child.is_alive():
        if quarantine.exists() and any(p.is_file() for p in quarantine.rglob("*.pdf")):
            break
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL  # killed mid-upload, not after it finished
    assert upload_copies(app) - return_keys(app)  # a copy that no row refers to
    out = app.test_cli_runner().invoke(args=["returns", "sweep", "--older-than", "0"])
    assert out.exit_code == 0, out.output
    assert upload_copies(app) == return_keys(app)
