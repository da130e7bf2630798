"""Property-based API testing: schemathesis generates requests from `/api/v1/openapi.json`.

For each role (staff, CDG, employer token, anonymous), every selected operation receives a few
requests that the schema allows, through the WSGI app on the real databases. Fails on any 5xx,
on answers that do not match the schema (status codes, content types, bodies), and on a request
the schema allows being refused as malformed (a 422 for the shape of the input; the rules the
schema cannot state, such as a SIRET's checksum, answer with their own codes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import auth, create_token

SIRET = "21810004800014"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "5"))
#: refusals of inputs the schema cannot describe (cross-field rules, checksums, references to
#: other records): a schema-valid request may meet them
RULE_CODES = {
    "invalid_siret",  # the Luhn checksum
    "unknown_cdg",
    "unknown_convention",
    "convention_not_of_cdg",
    "unknown_template_set",
    "unknown_option",
    "duplicate_option",
    "invalid_period",  # ends_on after starts_on
    "deliberation_before_cst_opinion",
    "date_outside_convention",
    "joins_before_deliberation",
    "cover_outside_convention",  # the first of the month after joins_on is past the convention
    "ambiguous_base",  # gross or its elements, not both
    "missing_base",
}
# issue 11, the agent's side: a designation's cross-field rules (the clause and its list, shares
# adding up to 100, birth dates against today) and the password policy
RULE_CODES |= {
    "beneficiaries_missing",
    "beneficiaries_not_expected",
    "birth_date_in_future",
    "invalid_birth_date",
    "invalid_share",
    "shares_not_100",
    "weak_password",
}
#: slow on purpose (PDF rendering, signing): covered by their own tests
SKIPPED = {
    ("POST", "/api/v1/employers/{siret}/kits"),
    ("POST", "/api/v1/kits/{kit_id}/countersign"),
}

#: writes worth trying on the existing records (other writes act: issue, sign, send…)
KNOWN_POST = {"/api/v1/kits/{kit_id}/documents/{kind}/returns"}

CALLS: dict[str, int] = {}


def _schema_shaped_refusal(response: Any, case: Any) -> None:
    """A 422 about the request's shape (`invalid_field`, `invalid_json`) for a valid request."""
    if response.status_code != 422 or case.meta is None:
        return
    if not case.meta.generation.mode.is_positive:
        return
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {}
    # an uploaded file's content is judged by the verification, not by the schema; so is the
    # JSON document a multipart upload carries in its `data` part (a subscription request)
    if error.get("code") not in RULE_CODES and error.get("field") not in ("file", "data"):
        raise AssertionError(
            f"{case.method} {case.formatted_path}: a request the schema allows was refused "
            f"({response.status_code} {response.text[:300]})"
        )


def _headers(
    app: Flask, client: FlaskClient, role: str, staff: dict[str, str], kit: dict[str, Any]
) -> dict[str, str]:
    if role == "staff":
        return staff
    if role == "cdg":
        return auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    if role == "employer":
        session = client.post(
            "/api/v1/portal/session",
            json={"siret": SIRET, "access_code": kit["access_code"]},
        )
        assert session.status_code == 200, session.json
        return auth(session.json["token"])
    return {}


def _operation_test(
    operation: Any,
    headers: dict[str, str],
    failures: list[str],
    path_parameters: dict[str, Any] | None = None,
) -> Callable:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(path_parameters=path_parameters))
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        CALLS[operation.label] = CALLS.get(operation.label, 0) + 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} {case.query or ''}: "
                f"{response.status_code} {response.text[:300]}"
            )
            return
        try:
            case.validate_response(
                response,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
                headers=headers,
            )
            _schema_shaped_refusal(response, case)
        except AssertionError as exc:  # schemathesis' failures derive from AssertionError
            failures.append(f"{operation.label}: {str(exc)[:600]}")

    return run


# PostgreSQL, the production database, where stricter types make more inputs fail (NUL
# characters, integer ranges); SQLite too would double the time for little more
@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("role", ["staff", "cdg", "employer", "anonymous"])
def test_api_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    app: Flask,
    client: FlaskClient,
    staff: dict[str, str],
    employer: dict[str, Any],
    role: str,
) -> None:
    kit = client.post(f"/api/v1/employers/{SIRET}/kits", headers=staff)
    assert kit.status_code == 201, kit.json
    headers = _headers(app, client, role, staff, kit.json)
    # the records that exist, so that requests also reach past the 404 of unknown ones
    known = {
        "siret": SIRET,
        "code": "81",
        "convention_id": employer["convention_id"],
        "kit_id": kit.json["id"],
        "kind": "special-conditions",
    }
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = 0
    CALLS.clear()
    for result in schema.get_all_operations():
        operation = result.ok()
        method = operation.method.upper()
        if (method, operation.path) in SKIPPED:
            continue
        operations += 1
        _operation_test(operation, headers, failures)()
        names = {p.name for p in operation.path_parameters}
        if names & known.keys() and (method in ("GET", "PATCH") or operation.path in KNOWN_POST):
            fixed = {name: known[name] for name in names & known.keys()}
            _operation_test(operation, headers, failures, fixed)()
    assert operations >= 25
    calls = sum(CALLS.values())
    print(f"schemathesis, {role}: {operations} operations, {calls} calls")
    assert calls >= operations * 2
    assert not failures, "\n".join(dict.fromkeys(failures))


def test_api_nul_characters_are_refused_never_a_server_error(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    """Found by schemathesis: PostgreSQL refuses NUL in text, which used to answer 500."""
    r = client.get("/api/v1/conventions?cdg=8%001", headers=staff)
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_characters"
    assert r.json["error"]["field"] == "cdg"
    r = client.get("/api/v1/archive?cdg=81&siret=%00", headers=staff)
    assert r.status_code == 422 and r.json["error"]["field"] == "siret"
    r = client.get("/api/v1/employers/2181%000004800014", headers=staff)
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = client.patch(f"/api/v1/employers/{SIRET}", json={"name": "Al\x00bi"}, headers=staff)
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_characters"
    assert client.get(f"/api/v1/employers/{SIRET}", headers=staff).json["name"] == "Albi"
