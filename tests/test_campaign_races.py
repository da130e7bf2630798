"""Campaign kits under concurrency, in-process (the workers' tests are in test_campaigns.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from service.campaigns.domain import pending_job_ids, start_campaign
from service.campaigns.tasks import run_campaign_job
from service.engine.models import Job
from service.extensions import db
from service.kits.actions import issue_one
from service.kits.models import Kit
from service.reference.domain import get_employer
from service.reference.models import Convention
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


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_kit_that_cannot_be_rendered_is_a_counted_failure(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    """Rendering ahead of the claim must not let an error escape the job's bookkeeping: the
    attempt is counted and its error recorded (else the message is dropped, the sweep sends it
    again for ever and the campaign never ends)."""
    add_employers(client, staff, convention["id"], 1)
    with app.app_context():
        db.session.execute(
            update(Convention)
            .where(Convention.id == convention["id"])
            .values(template_set="aucun-jeu-de-modeles")
        )
        started = start_campaign("81", actor="test", send=False)
        (job_id,) = pending_job_ids(started)
        db.session.remove()
    with app.app_context():
        outcome = run_campaign_job(job_id)
        db.session.remove()
    assert outcome.ran and not outcome.ok
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job is not None and job.attempts == 1 and job.last_error
        assert db.session.scalars(select(Kit)).all() == []
        db.session.remove()


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_campaign_job_never_supersedes_a_kit_staff_are_issuing(
    app: Flask, client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    """Staff issue the employer's kit by hand while the campaign's job for it runs: the job waits
    for that kit, finds it and issues none. (The job's lock on the employer's row conflicts with
    the key-share lock that the uncommitted kit's foreign key holds on it.)"""
    (siret,) = add_employers(client, staff, convention["id"], 1)
    with app.app_context():
        started = start_campaign("81", actor="test", send=False)
        (job_id,) = pending_job_ids(started)
        db.session.remove()

    def by_hand() -> None:
        with app.app_context():
            try:
                issue_one(get_employer(siret), actor="staff:test")
            finally:
                db.session.remove()

    def campaign_job() -> None:
        with app.app_context():
            try:
                assert run_campaign_job(job_id).ok
            finally:
                db.session.remove()

    with app.app_context():
        holder = db.engine.connect()
        holder.begin()
        holder.execute(text("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE"))
        first = threading.Thread(target=by_hand)
        first.start()
        first.join(timeout=6)  # the hand-made kit stored, waiting for the audit chain
        second = threading.Thread(target=campaign_job)
        second.start()
        second.join(timeout=6)
        holder.rollback()
        holder.close()
        first.join(timeout=60)
        second.join(timeout=60)
        kits = list(db.session.scalars(select(Kit)))
        assert [k.issued_by for k in kits] == ["staff:test"]
        job = db.session.get(Job, job_id)
        assert job is not None and job.status == "done" and job.kit_id == kits[0].id
        db.session.remove()
