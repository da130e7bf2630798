"""Importing 1 000 agents: the real request (`POST /api/v1/employers/{siret}/agents/import` with a
1 000-row CSV) through the Flask application on PostgreSQL, timed as a whole: reading the file,
validating every row, recording the memberships, their links and their e-mails (outbox) in one
transaction, and handing the jobs to the broker after the commit. Target: ≤ 5 s.

    python -m bench.agents_import [--rows 1000] [--profile]

PostgreSQL from BENCH_DATABASE_URL (a fresh database is created in it and dropped), else a
throwaway cluster; Redis from BENCH_REDIS_URL (redis://127.0.0.1:6379/15 by default), on a queue
of its own that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta

from sqlalchemy import create_engine, text

TARGET_S = 5.0
COLUMNS_EXAMPLE = {
    "first_name": "Camille",
    "birth_date": "1980-01-15",
    "status": "titulaire",
    "category": "C",
    "paid_by_hour_or_day": "non",
    "in_normal_service": "oui",
    "on_sick_leave": "non",
    "returned_on": "",
    "previous_collective_contract": "non",
    "has_individual_contract": "non",
    "tbi": "1500,00",
    "nbi": "0",
    "ri": "80,50",
    "cti": "49",
    "options": "deces",
}


def import_csv(rows: int, joins_on: date) -> bytes:
    from service.agents.schemas import IMPORT_COLUMNS

    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(IMPORT_COLUMNS)
    for n in range(1, rows + 1):
        values = dict(
            COLUMNS_EXAMPLE,
            last_name=f"Agent{n:05d}",
            email=f"agent{n}@example.fr",
            joins_on=joins_on.isoformat(),
        )
        writer.writerow([values[c] for c in IMPORT_COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def bench_import(
    base_url: str, *, rows: int, redis_url: str | None = None, profile: bool = False
) -> bool:
    from flask_migrate import upgrade

    from service import create_app
    from service.accounts.auth import create_user
    from service.backends import document_store
    from service.extensions import db
    from service.kits import lifecycle
    from service.kits.models import Kit
    from service.reference.domain import get_employer
    from service.subscriptions.domain import record_placeholders

    name = f"psc_bench_agents_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base_url.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory(prefix="psc-bench-agents-") as tmp:
            queue = f"psc-bench-agents-{uuid.uuid4().hex[:8]}"
            config = {"INSTANCE_PATH": tmp, "DATABASE_URL": url, "CELERY_QUEUE": queue}
            if redis_url:  # the production shape: jobs handed to Redis after the commit
                config["REDIS_URL"] = redis_url
            app = create_app(config)
            with app.app_context():
                upgrade()
                _, token = create_user(email="bench@assureur.fr", role="staff")
                db.session.commit()
            client = app.test_client()
            staff = {"Authorization": f"Bearer {token}"}
            siret = "21810004800014"
            for path, body in (
                ("/api/v1/cdgs", {"code": "81", "name": "CDG du Tarn", "email": "p@cdg81.fr"}),
                (
                    "/api/v1/conventions",
                    {
                        "cdg": "81",
                        "reference": "CDG81-PREV-2025-2030",
                        "insurer": "Allianz Vie",
                        "manager": "Collecteam",
                        "starts_on": "2025-01-01",
                        "ends_on": "2030-12-31",
                        "base_rate": "2.30",
                        "options": [{"code": "deces", "label": "Décès", "rate": "0.30"}],
                    },
                ),
            ):
                assert client.post(path, json=body, headers=staff).status_code == 201
            convention_id = client.get("/api/v1/conventions", headers=staff).json["items"][0]["id"]
            employer = {
                "siret": siret,
                "name": "Albi",
                "kind": "commune",
                "address": "16 rue de l'Hôtel de Ville, 81000 Albi",
                "email": "rh@mairie-albi.fr",
                "cdg": "81",
                "convention_id": convention_id,
                "headcount": 560,
                "cst_opinion_on": "2024-10-01",
                "deliberation_on": "2024-11-15",
                "contribution": {"mode": "flat", "amount": "15.00"},
            }
            assert client.post("/api/v1/employers", json=employer, headers=staff).status_code == 201
            with app.app_context():  # the papers received by post: the kit may be issued
                employer_row = get_employer(siret)
                record_placeholders(employer_row, actor="staff:bench", store=document_store())
                db.session.commit()
            kit = client.post(f"/api/v1/employers/{siret}/kits", headers=staff).json
            with app.app_context():
                lifecycle.mark_employer_signed(db.session.get(Kit, kit["id"]))
                db.session.commit()
            session = client.post(
                "/api/v1/portal/session", json={"siret": siret, "access_code": kit["access_code"]}
            ).json
            headers = {"Authorization": f"Bearer {session['token']}"}
            joins_on = date.fromisoformat(kit["cover_starts_on"]) + timedelta(days=62)
            data = import_csv(rows, joins_on.replace(day=1))

            def run() -> object:
                return client.post(
                    f"/api/v1/employers/{siret}/agents/import",
                    data={"file": (io.BytesIO(data), "agents.csv")},
                    headers=headers,
                    content_type="multipart/form-data",
                )

            start = time.perf_counter()
            if profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                response = profiler.runcall(run)
                pstats.Stats(profiler).sort_stats(
                    os.environ.get("BENCH_SORT", "cumulative")
                ).print_stats(30)
            else:
                response = run()
            elapsed = time.perf_counter() - start
            assert response.status_code == 201, response.get_data(as_text=True)[:500]  # type: ignore[attr-defined]
            recorded = response.json["count"]  # type: ignore[attr-defined]
            with app.app_context():
                db.engine.dispose()
            if redis_url:  # nobody consumes the bench's queue
                import redis

                redis.Redis.from_url(redis_url).delete(queue)
        ok = elapsed <= TARGET_S and recorded == rows
        print(
            f"agents import: {rows} rows (CSV) validated and recorded in one request in "
            f"{elapsed:.2f} s (target ≤ {TARGET_S:.0f} s) {'OK' if ok else 'OVER TARGET'}"
        )
        return ok
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_agents_import(*, rows: int = 1000, profile: bool = False) -> bool:
    base = os.environ.get("BENCH_DATABASE_URL")
    cluster = None
    if not base:
        from tests.pg import ThrowawayCluster

        cluster = ThrowawayCluster()
        base = cluster.start()
    try:
        return bench_import(
            base,
            rows=rows,
            redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            profile=profile,
        )
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    return 0 if bench_agents_import(rows=args.rows, profile=args.profile) else 1


if __name__ == "__main__":
    sys.exit(main())
