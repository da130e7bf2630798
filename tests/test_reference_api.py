"""Reference data through the API, on SQLite and PostgreSQL: CRUD, rules, scopes, errors."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import CDG81, CONVENTION, auth, create_token, employer_payload


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.json["error"]
    assert error["code"] == code
    assert error["message"] and error["message"][0].isupper()  # a French sentence
    if field is not None:
        assert error.get("field") == field


@pytest.mark.postgres
def test_health_reports_database_and_storage(client: FlaskClient) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json == {
        "status": "ok",
        "database": "ok",
        "documents": "ok",
        "archive": "ok",
        "storage": "ok",
        "workers": 0,
        "jobs": {"pending": 0, "failed": 0},
    }


def test_api_requires_a_valid_token(client: FlaskClient) -> None:
    assert_error(client.get("/api/v1/cdgs"), 401, "unauthorized")
    assert_error(client.get("/api/v1/cdgs", headers=auth("psc_nope")), 401, "invalid_token")


def test_cdg_role_cannot_create_reference_data(
    app: Flask, client: FlaskClient, convention: dict[str, Any]
) -> None:
    token = create_token(app, "cdg", "suivi@cdg81.fr", cdg="81")
    r = client.post("/api/v1/cdgs", json={**CDG81, "code": "82"}, headers=auth(token))
    assert_error(r, 403, "forbidden")


@pytest.mark.postgres
def test_cdg_create_list_update_and_duplicate(client: FlaskClient, staff: dict[str, str]) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    assert_error(client.post("/api/v1/cdgs", json=CDG81, headers=staff), 409, "duplicate_cdg")
    r = client.patch("/api/v1/cdgs/81", json={"email": "contact@cdg81.fr"}, headers=staff)
    assert r.json["email"] == "contact@cdg81.fr"
    items = client.get("/api/v1/cdgs", headers=staff).json["items"]
    assert [c["code"] for c in items] == ["81"]
    assert_error(
        client.post("/api/v1/cdgs", json={**CDG81, "code": "81", "email": "x"}, headers=staff),
        422,
        "invalid_field",
        "email",
    )


def test_convention_round_trip(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    assert convention["base_rate"] == "2.30"
    assert convention["cdg_fee_rate"] == "1.10"
    assert convention["options"][0] == {"code": "deces", "label": "Décès", "rate": "0.30"}
    r = client.get(f"/api/v1/conventions/{convention['id']}", headers=staff)
    assert r.json == convention
    listed = client.get("/api/v1/conventions?cdg=81", headers=staff).json["items"]
    assert [c["id"] for c in listed] == [convention["id"]]
    assert client.get("/api/v1/conventions?cdg=82", headers=staff).json["items"] == []
    r = client.patch(
        f"/api/v1/conventions/{convention['id']}", json={"base_rate": "2.40"}, headers=staff
    )
    assert r.json["base_rate"] == "2.40"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"cdg": "99"}, "unknown_cdg"),
        ({"ends_on": "2024-12-31"}, "invalid_period"),
        ({"base_rate": "0"}, "invalid_rate"),
        ({"base_rate": "2,3 %"}, "invalid_rate"),
        (
            {
                "options": [
                    {"code": "deces", "label": "Décès", "rate": "0.3"},
                    {"code": "deces", "label": "Décès", "rate": "0.3"},
                ]
            },
            "duplicate_option",
        ),
        ({"template_set": "inconnu"}, "unknown_template_set"),
    ],
)
def test_convention_rules(
    client: FlaskClient, staff: dict[str, str], change: dict[str, Any], code: str
) -> None:
    client.post("/api/v1/cdgs", json=CDG81, headers=staff)
    r = client.post("/api/v1/conventions", json={**CONVENTION, **change}, headers=staff)
    assert_error(r, 422, code)


@pytest.mark.postgres
def test_convention_duplicate_reference(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    assert_error(
        client.post("/api/v1/conventions", json=CONVENTION, headers=staff),
        409,
        "duplicate_convention",
    )


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        (
            {"contribution": {"mode": "flat", "amount": "6.99"}},
            "contribution_below_minimum",
            "contribution.amount",
        ),
        (
            {"contribution": {"mode": "flat", "amount": "50 %"}},
            "contribution_not_an_amount",
            "contribution.amount",
        ),
        (
            {"contribution": {"mode": "percent", "rate": "50"}},
            "contribution_not_an_amount",
            "contribution",
        ),
        (
            {
                "contribution": {
                    "mode": "by_category",
                    "amounts": {"A": "7.00", "B": "12.00", "C": "18.00"},
                }
            },
            "modulation_criteria_missing",
            "contribution.criteria",
        ),
        (
            {"cst_opinion_on": "2024-11-20", "deliberation_on": "2024-11-15"},
            "deliberation_before_cst_opinion",
            "deliberation_on",
        ),
        ({"joins_on": "2031-01-01"}, "date_outside_convention", "joins_on"),
        # its first of the next month (the start of cover) is after the convention: no kit ever
        ({"joins_on": "2030-12-15"}, "cover_outside_convention", "joins_on"),
        (
            {"deliberation_on": "2031-02-01", "cst_opinion_on": "2031-01-01"},
            "date_outside_convention",
            None,
        ),
        ({"siret": "21810004800019"}, "invalid_siret", "siret"),
        ({"siret": "2181000480001"}, "invalid_siret", "siret"),
        ({"cdg": "99"}, "unknown_cdg", "cdg"),
        ({"convention_id": 999999}, "unknown_convention", "convention_id"),
        ({"kind": "royaume"}, "invalid_kind", "kind"),
        ({"headcount": -1}, "invalid_field", "headcount"),
        ({"email": "pas-une-adresse"}, "invalid_field", "email"),
        ({"cst_opinion_on": "01/10/2024"}, "invalid_field", "cst_opinion_on"),
        ({"surprise": 1}, "invalid_field", "surprise"),
    ],
)
def test_employer_rules_refuse_bad_input(
    client: FlaskClient,
    staff: dict[str, str],
    convention: dict[str, Any],
    change: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    r = client.post(
        "/api/v1/employers", json=employer_payload(convention["id"], **change), headers=staff
    )
    assert_error(r, 422, code, field)
    # nothing half-written
    assert client.get("/api/v1/employers", headers=staff).json["total"] == 0


def test_employer_convention_must_belong_to_its_cdg(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    client.post(
        "/api/v1/cdgs",
        json={**CDG81, "code": "82", "name": "CDG du Tarn-et-Garonne"},
        headers=staff,
    )
    r = client.post(
        "/api/v1/employers", json=employer_payload(convention["id"], cdg="82"), headers=staff
    )
    assert_error(r, 422, "convention_not_of_cdg", "convention_id")


def test_employer_create_read_update(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    assert employer["siret"] == "21810004800014"
    assert employer["contribution"] == {"mode": "flat", "amount": "15.00"}
    assert employer["joins_on"] == "2025-01-01"  # first of the month after, not before the start
    assert employer["kit_status"] == "none"
    r = client.patch(
        "/api/v1/employers/21810004800014",
        json={
            "contribution": {
                "mode": "by_category",
                "amounts": {"A": "7", "B": "12", "C": "18"},
                "criteria": "Selon la catégorie hiérarchique de l'agent",
            }
        },
        headers=staff,
    )
    assert r.status_code == 200, r.json
    assert r.json["contribution"]["amounts"] == {"A": "7.00", "B": "12.00", "C": "18.00"}
    r = client.patch(
        "/api/v1/employers/21810004800014",
        json={"contribution": {"mode": "flat", "amount": "3.00"}},
        headers=staff,
    )
    assert_error(r, 422, "contribution_below_minimum")
    assert (
        client.get("/api/v1/employers/21810004800014", headers=staff).json["contribution"]["mode"]
        == "by_category"
    )
    assert_error(
        client.post(
            "/api/v1/employers", json=employer_payload(employer["convention_id"]), headers=staff
        ),
        409,
        "duplicate_siret",
    )


@pytest.mark.postgres
def test_cdg_token_sees_only_its_own_employers(
    app: Flask, client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    own = auth(create_token(app, "cdg", "suivi@cdg81.fr", cdg="81"))
    client.post("/api/v1/cdgs", json={**CDG81, "code": "82", "name": "CDG 82"}, headers=staff)
    other = auth(create_token(app, "cdg", "suivi@cdg82.fr", cdg="82"))
    assert client.get("/api/v1/employers/21810004800014", headers=own).status_code == 200
    assert_error(
        client.get("/api/v1/employers/21810004800014", headers=other), 404, "unknown_employer"
    )
    assert client.get("/api/v1/employers?cdg=81", headers=other).json["total"] == 0
    assert client.get("/api/v1/employers", headers=own).json["total"] == 1


@pytest.mark.postgres
def test_employer_listing_filters(
    client: FlaskClient, staff: dict[str, str], employer: dict[str, Any]
) -> None:
    client.post(
        "/api/v1/employers",
        json=employer_payload(employer["convention_id"], siret="21810001400016", name="Aguts"),
        headers=staff,
    )
    assert client.get("/api/v1/employers?q=agu", headers=staff).json["total"] == 1
    client.post(
        "/api/v1/employers",
        json=employer_payload(
            employer["convention_id"], siret="20003402300016", name="Œuilly-Élancourt"
        ),
        headers=staff,
    )
    assert client.get("/api/v1/employers?kind=commune", headers=staff).json["total"] == 3
    assert client.get("/api/v1/employers?kind=cc", headers=staff).json["total"] == 0
    for query in ("œuilly", "ŒUILLY", "élan"):
        found = client.get(f"/api/v1/employers?q={query}", headers=staff).json["items"]
        assert [e["name"] for e in found] == ["Œuilly-Élancourt"], query
    assert client.get("/api/v1/employers?status=none", headers=staff).json["total"] == 3
    assert client.get("/api/v1/employers?status=issued", headers=staff).json["total"] == 0
    assert_error(client.get("/api/v1/employers?status=bogus", headers=staff), 422, "invalid_status")
    page = client.get("/api/v1/employers?limit=1&offset=1", headers=staff).json
    assert page["total"] == 3 and [e["name"] for e in page["items"]] == ["Albi"]


def test_simulation_endpoint(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    url = f"/api/v1/conventions/{convention['id']}/simulation"
    r = client.get(f"{url}?gross=1700.00&contribution=15.00", headers=staff)
    assert r.status_code == 200
    assert (r.json["premium"], r.json["contribution_paid"], r.json["employee_share"]) == (
        "39.10",
        "15.00",
        "24.10",
    )
    r = client.get(f"{url}?tbi=1400&nbi=100&ir=40&contribution=15&options=deces", headers=staff)
    assert r.json["base"] == "1500.00" and r.json["rate"] == "2.60"
    assert r.json["premium"] == "39.00"
    assert len(r.json["notes"]) == 1
    assert_error(client.get(f"{url}?contribution=15", headers=staff), 422, "missing_base")
    assert_error(client.get(f"{url}?gross=abc", headers=staff), 422, "invalid_amount")
    assert_error(
        client.get(f"{url}?gross=1500&contribution=20%25", headers=staff),
        422,
        "contribution_not_an_amount",
    )
    assert_error(client.get(f"{url}?gross=1500&options=vol", headers=staff), 422, "unknown_option")


def test_unknown_route_and_bad_json_are_clean_errors(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    assert_error(client.get("/api/v1/nope", headers=staff), 404, "not_found")
    r = client.post(
        "/api/v1/cdgs", data="{not json", headers={**staff, "Content-Type": "application/json"}
    )
    assert_error(r, 422, "invalid_json")
    assert_error(client.delete("/api/v1/cdgs", headers=staff), 405, "method_not_allowed")


def test_openapi_document_is_valid_and_lists_the_api(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/api/v1/openapi.json").json
    validate(spec)
    for path in (
        "/api/v1/employers/{siret}/kits",
        "/api/v1/kits/{kit_id}",
        "/api/v1/conventions/{convention_id}/simulation",
        "/api/v1/health",
    ):
        assert path in spec["paths"], path
    assert "EmployerIn" in spec["components"]["schemas"]
