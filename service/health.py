"""`GET /api/v1/health`: the service answers, with the state of each backend it depends on.

Each component (the database, the documents store, the archive store) is checked in its own
thread, all at once, each bounded by HEALTH_TIMEOUT: a hung backend is reported as such within
that delay instead of holding the answer. 503 as soon as one component is not "ok".

The background engine is reported too, for information: `"workers"` (Celery workers whose
heartbeat is under 30 s old) and `"jobs": {"pending": n, "failed": n}`. They never turn the
status red: no worker answering is a normal state (the web alone, `flask jobs run`), and jobs
wait for one without loss; monitoring alerts on these numbers if it wants to. When the database
does not answer in time, they are `null`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, jsonify
from sqlalchemy import text

from service.api import route
from service.backends import health_stores, settings
from service.extensions import db
from service.jobs.domain import job_counts, workers
from storage import StorageError

OK = "ok"


def _ping_database(app: Flask) -> None:
    with app.app_context():
        db.session.execute(text("SELECT 1"))


def _engine(app: Flask, out: dict[str, Any]) -> None:
    with app.app_context():
        out["workers"] = len(workers())
        out["jobs"] = job_counts()


def _run(check: Callable[[], None], results: dict[str, str], name: str) -> None:
    try:
        check()
        results[name] = OK
    except StorageError:
        results[name] = "injoignable"
    except Exception:  # reported, not raised: this is the health check
        results[name] = "injoignable" if name == "database" else "en erreur"


def run_checks(checks: dict[str, Callable[[], None]], *, timeout: float) -> dict[str, str]:
    """Each check's result ("ok" or a French word); a check still running after `timeout`
    seconds is reported as not answering (its thread ends on its own backend timeout)."""
    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=_run, args=(check, results, name), daemon=True)
        for name, check in checks.items()
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, end - time.monotonic()))
    late = f"ne répond pas (plus de {timeout:g} s)"
    return {name: dict(results).get(name, late) for name in checks}


@route(
    "/health",
    summary="État du service, de la base et des stockages (documents, archive) ; pour "
    "information, les workers actifs et les tâches en attente ou en échec (sans effet sur l'état)",
    roles=None,
    responses={200: "Tout fonctionne", 503: "Base ou stockage injoignable"},
)
def health() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stores = health_stores()
    engine: dict[str, Any] = {}
    checks: dict[str, Callable[[], None]] = {
        "database": lambda: _ping_database(app),
        "documents": stores["documents"].ping,
        "archive": stores["archive"].ping,
        # information only: never part of the status
        "engine": lambda: _engine(app, engine),
    }
    results = run_checks(checks, timeout=settings().health_timeout)
    results.pop("engine")
    storage = next((results[k] for k in ("documents", "archive") if results[k] != OK), OK)
    ok = all(v == OK for v in results.values())
    body = {
        "status": OK if ok else "degraded",
        **results,
        "storage": storage,
        "workers": engine.get("workers"),
        "jobs": engine.get("jobs"),
    }
    return jsonify(body), 200 if ok else 503
