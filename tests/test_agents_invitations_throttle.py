"""Re-sending the confirmation e-mails is throttled per employer: 3 an hour, then a 429 with
Retry-After and nothing queued; another employer keeps its own allowance."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.mail.queue import SEND_TASK
from tests.test_agents_invitations import (  # noqa: F401  (fixtures)
    ALBI,
    OTHER,
    agents,
    app_config,
    inbox,
    jobs,
    smtp,
)
from tests.test_agents_payroll import employer_token
from tests.test_reference_api import assert_error


@pytest.mark.usefixtures("agents")
def test_invitations_resend_throttled_per_employer_with_retry_after(
    app: Flask, client: FlaskClient, staff: dict[str, str]
) -> None:
    url = f"/api/v1/employers/{ALBI}/agents/invitations"
    for _ in range(3):
        assert client.post(url, headers=staff).status_code == 202
    queued = len(jobs(app, SEND_TASK))
    r = client.post(url, headers=employer_token(app, ALBI))
    assert_error(r, 429, "too_many_attempts")
    assert "renvoyés" in r.json["error"]["message"]
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert len(jobs(app, SEND_TASK)) == queued  # nothing more queued
    # another employer is not held back by Albi's re-sends
    other = client.post(f"/api/v1/employers/{OTHER}/agents/invitations", headers=staff)
    assert other.status_code == 202, other.json
