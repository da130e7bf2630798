"""Re-sending the confirmation e-mail in bulk: one new link per eligible membership, the older
ones expired, one e-mail job each, handed to the broker by fan-out jobs; sent by real workers to
the SMTP helper, and nothing lost when the broker's messages are."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from service.agents.models import ActivationLink, Membership
from service.agents.notify import activation_token_hash, membership_confirmed
from service.engine import outbox
from service.engine.models import Job
from service.engine.outbox import FANOUT_TASK
from service.extensions import db
from service.formatting import long_date, money
from service.mail.queue import SEND_TASK, mail_body
from service.reference.models import Employer
from service.timeutil import local, utcnow
from tests.conftest import ARTIFACTS, auth, create_token, employer_payload, run_jobs
from tests.smtp import Inbox, smtp_server
from tests.test_agents_payroll import add_membership, employer_token
from tests.workers import redis_config, wait_for, worker

#: locking, concurrency or SQL of one dialect: on PostgreSQL as well as SQLite
pytestmark = pytest.mark.postgres


ALBI = "21810004800014"
OTHER = "21810001400016"
TOKEN = re.compile(r"jeton=([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    smtp[0].messages.clear()
    smtp[0].refuse = smtp[0].refused = 0
    return smtp[0]


@pytest.fixture
def app_config(smtp: tuple[Inbox, int]) -> dict[str, str]:
    return {**redis_config(), "MAIL_URL": f"smtp://127.0.0.1:{smtp[1]}"}


def agent(app: Flask, siret: str, n: int, *, state: str = "invited", link: bool = True) -> int:
    """A membership (Agent n) with, when `link`, its first confirmation e-mail and link."""
    membership_id = add_membership(
        app,
        siret,
        reference=f"ADH-81-{siret[-4:]}{n:05d}",
        last_name=f"Agent{n}",
        first_name="Camille",
        category="B",
        base={"tbi": "2000.00"},
        premium="46.00",
        contribution="15.00",
        joins_on=date(2025, 1, 1),
        state=state,
        left_on=date(2025, 6, 30) if state == "left" else None,
        email=f"agent{n}.{siret[-4:]}@exemple.fr",
    )
    if link:
        with app.app_context():
            membership_confirmed(db.session.get(Membership, membership_id))
            db.session.commit()
    return membership_id


@pytest.fixture
def agents(
    app: Flask, employer: dict[str, Any], client: FlaskClient, staff: dict[str, str]
) -> dict[str, int]:
    """At Albi: two invited agents with an unused link, one invited whose link was used, one
    active, one gone; at another employer, one invited agent."""
    r = client.post(
        "/api/v1/employers",
        json=employer_payload(employer["convention_id"], siret=OTHER, name="Gaillac"),
        headers=staff,
    )
    assert r.status_code == 201, r.json
    ids = {
        "invited1": agent(app, ALBI, 1),
        "invited2": agent(app, ALBI, 2),
        "used": agent(app, ALBI, 3),
        "active": agent(app, ALBI, 4, state="active"),
        "left": agent(app, ALBI, 5, state="left"),
        "other": agent(app, OTHER, 6),
    }
    with app.app_context():
        link = db.session.scalar(
            select(ActivationLink).where(ActivationLink.membership_id == ids["used"])
        )
        link.used_at = utcnow()
        db.session.commit()
    return ids


def links(app: Flask, membership_id: int) -> list[ActivationLink]:
    with app.app_context():
        rows = list(
            db.session.scalars(
                select(ActivationLink)
                .where(ActivationLink.membership_id == membership_id)
                .order_by(ActivationLink.id)
            )
        )
        db.session.expunge_all()
        return rows


def jobs(app: Flask, task: str) -> list[Job]:
    with app.app_context():
        rows = list(db.session.scalars(select(Job).where(Job.task == task).order_by(Job.id)))
        db.session.expunge_all()
        db.session.remove()
        return rows


def test_invitations_resend_replaces_unused_links_and_queues_one_mail_each(
    app: Flask, client: FlaskClient, agents: dict[str, int], inbox: Inbox
) -> None:
    before = {j.id for j in jobs(app, SEND_TASK)}
    r = client.post(
        f"/api/v1/employers/{ALBI}/agents/invitations", headers=employer_token(app, ALBI)
    )
    assert r.status_code == 202, r.json
    assert r.json == {"queued": 2, "skipped": []}
    now = utcnow()
    for key in ("invited1", "invited2"):
        old, new = links(app, agents[key])
        assert old.expires_at <= now  # the first link no longer opens the account
        assert new.used_at is None and new.expires_at > now + timedelta(days=13)
    assert len(links(app, agents["used"])) == 1  # already activated: nothing sent
    assert len(links(app, agents["active"])) == 1 and len(links(app, agents["other"])) == 1
    mails = [j for j in jobs(app, SEND_TASK) if j.id not in before]
    assert sorted(j.payload["to"] for j in mails) == [
        "agent1.0014@exemple.fr",
        "agent2.0014@exemple.fr",
    ]
    (fanout,) = jobs(app, FANOUT_TASK)
    assert sorted(fanout.payload["jobs"]) == sorted(j.id for j in mails)

    # run here (no worker): every job done, each e-mail carries the new link's token
    run_jobs(app)
    assert {j.status for j in jobs(app, SEND_TASK)} == {"done"}
    assert jobs(app, FANOUT_TASK)[0].status == "done"
    resent = [
        m for m in inbox.messages if m["To"] in ("agent1.0014@exemple.fr", "agent2.0014@exemple.fr")
    ]
    assert len(resent) == 4  # the first confirmations and the re-sent ones
    new_hashes = {links(app, agents[k])[-1].token_hash for k in ("invited1", "invited2")}
    sent_hashes = {activation_token_hash(TOKEN.search(m.get_content()).group(1)) for m in resent}
    assert new_hashes <= sent_hashes
    body = resent[-1].get_content()
    assert "Bonjour Camille Agent" in body and "/adherent/activation?jeton=" in body


def test_invitations_only_the_given_ids_and_report_the_ineligible(
    app: Flask, client: FlaskClient, staff: dict[str, str], agents: dict[str, int]
) -> None:
    r = client.post(
        f"/api/v1/employers/{ALBI}/agents/invitations",
        json={"ids": [agents["invited2"], agents["active"], agents["used"]]},
        headers=staff,
    )
    assert r.status_code == 202
    assert r.json == {"queued": 1, "skipped": sorted([agents["active"], agents["used"]])}
    assert len(links(app, agents["invited1"])) == 1
    assert len(links(app, agents["invited2"])) == 2


def test_invitations_with_another_employers_id_write_nothing(
    app: Flask, client: FlaskClient, staff: dict[str, str], agents: dict[str, int]
) -> None:
    before = len(jobs(app, SEND_TASK))
    r = client.post(
        f"/api/v1/employers/{ALBI}/agents/invitations",
        json={"ids": [agents["invited1"], agents["other"]]},
        headers=staff,
    )
    assert r.status_code == 404
    assert r.json["error"]["code"] == "unknown_membership"
    assert len(jobs(app, SEND_TASK)) == before
    assert len(links(app, agents["invited1"])) == 1


@pytest.mark.parametrize("body", [{"ids": "tous"}, {"ids": [0.5]}, {"tous": True}, {"ids": ["a"]}])
def test_invitations_bad_body_is_refused(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], body: dict[str, Any]
) -> None:
    r = client.post(f"/api/v1/employers/{ALBI}/agents/invitations", json=body, headers=staff)
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_field"


def test_invitations_of_another_employer_are_not_found(
    app: Flask, client: FlaskClient, agents: dict[str, int]
) -> None:
    r = client.post(
        f"/api/v1/employers/{ALBI}/agents/invitations", headers=employer_token(app, OTHER)
    )
    assert r.status_code == 404
    cdg = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    r = client.post(f"/api/v1/employers/{ALBI}/agents/invitations", headers=cdg)
    assert r.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count(ActivationLink.id))) == 6


def _log(app: Flask, what: str) -> Path:
    return ARTIFACTS / "workers" / f"{what}-{app.extensions['psc.settings'].task_queue}.log"


@pytest.mark.parametrize("backend", ["postgres"])
def test_invitations_are_sent_by_real_workers_and_none_is_lost_with_the_broker_messages(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any], inbox: Inbox
) -> None:
    for n in range(40):
        agent(app, ALBI, n, link=False)
    r = client.post(f"/api/v1/employers/{ALBI}/agents/invitations", headers=staff)
    assert r.json["queued"] == 40
    # the broker loses every message (a restart without persistence): only the outbox remains
    celery = app.extensions["celery"]
    queue = app.extensions["psc.settings"].task_queue
    with celery.connection_for_write() as conn:
        purged = conn.default_channel.queue_purge(queue)
    assert purged == 1  # the request handed the broker one fan-out message, not 40
    with worker(app, _log(app, "invitations"), concurrency=2):
        with app.app_context():
            outbox.sweep(stale_after=timedelta(0))  # what beat's sweep does every minute
        wait_for(
            lambda: (
                len(inbox.messages) >= 40 and {j.status for j in jobs(app, SEND_TASK)} == {"done"}
            ),
            timeout=90,
            what="40 e-mails sent",
        )
    recipients = sorted(m["To"] for m in inbox.messages)
    assert recipients == sorted(f"agent{n}.0014@exemple.fr" for n in range(40))  # once each
    assert {j.status for j in jobs(app, FANOUT_TASK)} == {"done"}


def bulk_invited(app: Flask, siret: str, count: int) -> list[int]:
    """`count` invited memberships, inserted in one statement (no link yet)."""
    with app.app_context():
        employer = db.session.scalar(select(Employer).where(Employer.siret == siret))
        ids = list(
            db.session.scalars(
                insert(Membership).returning(Membership.id),
                [
                    {
                        "reference": f"ADH-81-9{n:05d}",
                        "employer_id": employer.id,
                        "convention_id": employer.convention_id,
                        "last_name": f"Masse{n}",
                        "first_name": "Dominique",
                        "birth_date": date(1975, 3, 3),
                        "person_key": f"masse{n}|dominique|1975-03-03",
                        "email": f"masse{n}@exemple.fr",
                        "status": "titulaire",
                        "category": "C",
                        "base": {"tbi": "1800.00"},
                        "options": [],
                        "joins_on": date(2025, 1, 1),
                        "base_amount": Decimal("1800.00"),
                        "premium": Decimal("41.40"),
                        "employer_contribution": Decimal("15.00"),
                        "employee_share": Decimal("26.40"),
                        "state": "invited",
                        "created_by": "test",
                    }
                    for n in range(count)
                ],
            )
        )
        db.session.commit()
        return ids


def test_invitations_in_bulk_span_several_chunks_without_losing_one(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    ids = bulk_invited(app, ALBI, 1_201)  # three fan-out chunks of 500, two id chunks of 1 000
    r = client.post(
        f"/api/v1/employers/{ALBI}/agents/invitations", json={"ids": ids}, headers=staff
    )
    assert r.status_code == 202 and r.json == {"queued": 1_201, "skipped": []}
    mails = jobs(app, SEND_TASK)
    assert len(mails) == 1_201
    assert len({j.payload["to"] for j in mails}) == 1_201
    fanouts = jobs(app, FANOUT_TASK)
    assert [len(j.payload["jobs"]) for j in fanouts] == [500, 500, 201]
    assert sorted(i for j in fanouts for i in j.payload["jobs"]) == sorted(j.id for j in mails)
    with app.app_context():
        assert db.session.scalar(select(func.count(ActivationLink.id))) == 1_201
        db.session.remove()
    # again, for everyone: each gets a second link, the first one expired
    r = client.post(f"/api/v1/employers/{ALBI}/agents/invitations", headers=staff)
    assert r.json["queued"] == 1_201
    with app.app_context():
        now = utcnow()
        live = db.session.scalar(
            select(func.count(ActivationLink.id)).where(ActivationLink.expires_at > now)
        )
        assert live == 1_201
        assert db.session.scalar(select(func.count(ActivationLink.id))) == 2_402


def test_invitations_resend_the_confirmation_email_itself_with_a_new_link(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    """One writer (`notify.confirm_memberships`): the re-sent e-mail is the first confirmation,
    premium breakdown, start of cover and last valid day included; only the link is new."""
    agent_id = agent(app, ALBI, 7)
    (first,) = jobs(app, SEND_TASK)
    r = client.post(f"/api/v1/employers/{ALBI}/agents/invitations", headers=staff)
    assert r.json == {"queued": 1, "skipped": []}
    first_mail, again = jobs(app, SEND_TASK)
    assert first_mail.id == first.id
    old_token = TOKEN.search(mail_body(first.payload)).group(1)
    new_token = TOKEN.search(mail_body(again.payload)).group(1)
    assert new_token != old_token
    assert again.payload["to"] == first.payload["to"] == "agent7.0014@exemple.fr"
    assert again.payload["subject"] == first.payload["subject"]
    assert again.payload["subject"] == (
        "Votre adhésion à la prévoyance de la commune d'Albi (ADH-81-001400007)"
    )
    assert mail_body(again.payload) == mail_body(first.payload).replace(old_token, new_token)
    body = mail_body(again.payload)
    assert (
        f"Votre cotisation mensuelle : {money(Decimal('46'))}, dont {money(Decimal('15'))} pris "
        f"en charge par votre employeur ; reste à votre charge : {money(Decimal('31'))}."
    ) in body
    assert "Votre garantie commence le 1er janvier 2025." in body
    (link,) = [x for x in links(app, agent_id) if x.expires_at > utcnow()]
    last_day = long_date(local(link.expires_at, "Europe/Paris").date())
    assert f"reste valable jusqu'au {last_day} inclus." in body
    assert link.token_hash == activation_token_hash(new_token)
