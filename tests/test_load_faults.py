"""Load and faults: the audit chain under concurrency, slow clients, a hung store, quarantine."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

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
