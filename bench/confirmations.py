"""Confirmations for 10 000 agents: the request that queues them, then the real Celery workers
(Redis, PostgreSQL) sending every one to a loopback SMTP server (tests/smtp.py).

A fresh database gets the Tarn demo data and 10 000 `invited` memberships at one employer
(bulk-inserted: registering agents is not what is measured). Two worker processes run
`celery --app service.worker worker --concurrency 2`. Printed: the request's time
(`POST /api/v1/employers/{siret}/agents/invitations`, target ≤ 10 s) and the time until the SMTP
server has received every message.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, insert, select

from bench.campaign import _database, _drop

TARGET_QUEUE_S = 10.0
#: the bench gives up waiting after this (and says how many arrived)
SEND_TIMEOUT_S = 900.0


def bench_confirmations(*, base_url: str, redis_url: str, count: int = 10_000) -> bool:
    from flask_migrate import upgrade

    from service import create_app
    from service.accounts.auth import create_user
    from service.agents.models import Membership
    from service.demo.load import load_demo
    from service.engine.models import Job
    from service.extensions import db
    from service.mail.queue import SEND_TASK
    from service.reference.models import Employer
    from tests.smtp import smtp_server
    from tests.workers import worker

    url, name = _database(base_url)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="psc-bench-confirm-") as tmp,
            smtp_server() as server,
        ):
            inbox, port = server
            app = create_app(
                {
                    "INSTANCE_PATH": tmp,
                    "DATABASE_URL": url,
                    "REDIS_URL": redis_url,
                    "CELERY_QUEUE": f"psc-bench-{uuid.uuid4().hex[:8]}",
                    "MAIL_URL": f"smtp://127.0.0.1:{port}",
                    "SECRET_KEY": "bench",
                    "PUBLIC_URL": "http://portail.bench.local",
                }
            )
            with app.app_context():
                upgrade()
                load_demo()
                employer = db.session.scalars(select(Employer).order_by(Employer.id)).first()
                assert employer is not None
                siret = employer.siret
                db.session.execute(
                    insert(Membership),
                    [
                        {
                            "reference": f"ADH-81-{n:06d}",
                            "employer_id": employer.id,
                            "convention_id": employer.convention_id,
                            "last_name": f"Agent{n}",
                            "first_name": "Camille",
                            "birth_date": date(1980, 1, 1),
                            "person_key": f"agent{n}|camille|1980-01-01",
                            "email": f"agent{n}@bench.exemple.fr",
                            "status": "titulaire",
                            "category": "B",
                            "base": {"tbi": "2000.00"},
                            "options": [],
                            "joins_on": date(2025, 1, 1),
                            "base_amount": Decimal("2000.00"),
                            "premium": Decimal("46.00"),
                            "employer_contribution": Decimal("15.00"),
                            "employee_share": Decimal("31.00"),
                            "state": "invited",
                            "created_by": "bench",
                        }
                        for n in range(count)
                    ],
                )
                _, token = create_user(email="bench@assureur.fr", role="staff")
                db.session.commit()
            log = Path(tmp) / "worker.log"
            with worker(app, log, concurrency=2):
                client = app.test_client()
                start = time.perf_counter()
                r = client.post(
                    f"/api/v1/employers/{siret}/agents/invitations",
                    headers={"Authorization": f"Bearer {token}"},
                )
                queued_s = time.perf_counter() - start
                assert r.status_code == 202 and r.json["queued"] == count, r.json
                sent_start = time.perf_counter()
                deadline = sent_start + SEND_TIMEOUT_S
                while len(inbox.messages) < count and time.perf_counter() < deadline:
                    time.sleep(0.5)
                sent_s = time.perf_counter() - sent_start
                total_s = time.perf_counter() - start
            with app.app_context():
                done = db.session.scalar(
                    select(func.count(Job.id)).where(Job.task == SEND_TASK, Job.status == "done")
                )
                db.engine.dispose()
            recipients = {m["To"] for m in inbox.messages}
    finally:
        _drop(base_url, name)
    ok = queued_s <= TARGET_QUEUE_S and len(recipients) == count
    print(
        f"confirmations: {count} queued by one request in {queued_s:.2f} s "
        f"(target ≤ {TARGET_QUEUE_S:.0f} s) {'OK' if queued_s <= TARGET_QUEUE_S else 'OVER'}"
    )
    print(
        f"               sent by 2 worker processes to the loopback SMTP server in "
        f"{sent_s:.1f} s after the request, {total_s:.1f} s from its start "
        f"({len(recipients) / sent_s:.0f} e-mails/s); "
        f"{len(recipients)} distinct recipients, {done} jobs done"
    )
    return ok
