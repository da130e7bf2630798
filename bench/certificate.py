"""The membership certificate, once warm: `python -m bench.certificate [--rounds N]`, or part of
`python -m bench`.

One agent with one membership at the first demo employer; the agent signs in through the API,
downloads the certificate once (warm-up: templates, fonts, the layout of this content), then N
times through the WSGI app (authentication, lookups, the response). Target: median ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from decimal import Decimal
from typing import Any

TARGET_CERTIFICATE_S = 0.050
PASSWORD = "un mot de passe de banc d'essai"


def _membership(employer: Any) -> Any:
    """A membership written as a row (base 1 500,00 €, 2,30 % + décès 0,30 %, 15,00 €), with
    its agent's account already activated."""
    from service.accounts.auth import hash_password
    from service.agents.models import AgentAccount, Membership
    from service.extensions import db
    from service.timeutil import utcnow

    account = AgentAccount(
        email="agent.banc@example.fr", password_hash=hash_password(PASSWORD), activated_at=utcnow()
    )
    db.session.add(account)
    db.session.flush()
    premium = Decimal("39.00")
    membership = Membership(
        reference="ADH-81-BANC01",
        employer_id=employer.id,
        convention_id=employer.convention_id,
        account_id=account.id,
        last_name="Banc",
        first_name="Agathe",
        birth_date=date(1980, 1, 2),
        person_key="banc|agathe|1980-01-02",
        email=account.email,
        status="titulaire",
        category="C",
        has_individual_contract=True,
        base={"tbi": "1500.00", "nbi": "0.00", "ri": "0.00", "cti": "0.00"},
        options=["deces"],
        joins_on=date(2025, 2, 1),
        base_amount=Decimal("1500.00"),
        premium=premium,
        employer_contribution=Decimal("15.00"),
        employee_share=premium - Decimal("15.00"),
        state="active",
        created_by="bench",
    )
    db.session.add(membership)
    db.session.commit()
    return membership


def bench_certificate(app: Any, employer: Any, *, rounds: int = 50) -> bool:
    """Median of `rounds` certificate downloads once warm; True within the target."""
    _membership(employer)
    client = app.test_client()
    token = client.post(
        "/api/v1/agents/session", json={"email": "agent.banc@example.fr", "password": PASSWORD}
    ).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    first = client.get("/api/v1/agents/me/certificate.pdf", headers=headers)
    cold = time.perf_counter() - start
    assert first.status_code == 200, first.get_data(as_text=True)
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        r = client.get("/api/v1/agents/me/certificate.pdf", headers=headers)
        timings.append(time.perf_counter() - start)
        assert r.status_code == 200 and r.data == first.data
    median = statistics.median(timings)
    ok = median <= TARGET_CERTIFICATE_S
    print(
        f"membership certificate: first {cold * 1000:.0f} ms, then median "
        f"{median * 1000:.1f} ms over {rounds} (target ≤ {TARGET_CERTIFICATE_S * 1000:.0f} ms) "
        f"{'OK' if ok else 'OVER TARGET'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    from flask_migrate import upgrade

    from service import create_app
    from service.demo.load import load_demo
    from service.extensions import db
    from service.reference.models import Employer

    with tempfile.TemporaryDirectory(prefix="psc-bench-") as tmp:
        app = create_app({"INSTANCE_PATH": tmp, "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3"})
        with app.app_context():
            upgrade()
            load_demo()
            employer = db.session.scalars(db.select(Employer).order_by(Employer.id)).first()
            return 0 if bench_certificate(app, employer, rounds=args.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
