"""Load and faults: the audit chain under concurrency, slow clients, a hung store, quarantine."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from service import create_app
from service.audit.domain import record, verify_chain
from service.audit.models import AuditEvent
from service.extensions import db

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
