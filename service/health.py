"""`GET /api/v1/health`: the service answers, with database and storage reachability."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from sqlalchemy import text

from service.api import route
from service.backends import document_store
from service.extensions import db


@route(
    "/health",
    summary="État du service, de la base et du stockage",
    roles=None,
    responses={200: "Tout fonctionne", 503: "Base ou stockage injoignable"},
)
def health() -> Any:
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: this is the health check
        db.session.rollback()
        checks["database"] = f"erreur : {type(exc).__name__}"
    try:
        document_store().ping()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"erreur : {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ok" if ok else "degraded", **checks}), 200 if ok else 503
