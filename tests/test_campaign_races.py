"""Campaign kits under concurrency, in-process (the workers' tests are in test_campaigns.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from service.campaigns.domain import pending_job_ids, start_campaign
from service.campaigns.tasks import run_campaign_job
from service.extensions import db
from service.kits.models import Kit
from tests.test_campaigns import add_employers


@pytest.mark.parametrize("backend", ["postgres"])
def test_two_campaigns_jobs_for_one_employer_issue_one_kit(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    """Campaign 1 ended with the employer failed; campaign 2 started for it; staff put campaign
    1's job back from the queue page. Both jobs run at once: one kit, the other job points at it.
    The audit chain's row is held so that both runs reach their writes together."""
    add_employers(client, staff, convention["id"], 1)
    with app.app_context():
        first = start_campaign("81", actor="test", send=False)
        first.status = "finished"
        db.session.commit()
        second = start_campaign("81", actor="test", send=False)
        ids = pending_job_ids(first) + pending_job_ids(second)
        db.session.remove()
    assert len(ids) == 2
    outcomes: list[Any] = []

    def run(job_id: int) -> None:
        with app.app_context():
            try:
                outcomes.append(run_campaign_job(job_id))
            finally:
                db.session.remove()

    with app.app_context():
        holder = db.engine.connect()
        holder.begin()
        holder.execute(text("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE"))
        threads = [threading.Thread(target=run, args=(job_id,)) for job_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=8)  # both rendered and blocked on a lock by now
        holder.rollback()
        holder.close()
        for thread in threads:
            thread.join(timeout=60)
        assert [o.ok for o in outcomes] == [True, True]
        kits = list(db.session.scalars(select(Kit)))
        assert len(kits) == 1
        db.session.remove()
