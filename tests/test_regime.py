"""The regime in force (issue 12): the convention says it, the API checks it, every document of the
kit that states the contract's nature follows it, and the employer's contribution obeys it."""

from __future__ import annotations

import dataclasses
import subprocess
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import labels
from service.demo.load import CONVENTION as DEMO
from service.errors import InvalidInput
from service.kits.render import RenderedKit, render_kit
from service.reference.rules import check_half, parse_contribution
from tests.conftest import CDG81, CONVENTION, employer_payload, record_prerequisites
from tests.pdftools import fold
from tests.test_pages import sign_in
from tests.test_reference_api import assert_error
from tests.test_render import kit_input

MANDATORY = {**CONVENTION, "reference": "CDG81-PREV-OBLIG-2029", "regime": "mandatory"}


def pdftotext(data: bytes) -> str:
    out = subprocess.run(
        ["pdftotext", "-", "-"], input=data, capture_output=True, check=True, timeout=60
    ).stdout
    return fold(out.decode())


def kit_text(kit: RenderedKit) -> dict[str, str]:
    return {doc.kind: pdftotext(doc.pdf) for doc in kit.documents}


@pytest.fixture(scope="module")
def kits() -> dict[str, dict[str, str]]:
    out = {}
    for regime in ("facultative", "mandatory"):
        data = kit_input()
        data = dataclasses.replace(
            data, convention=dataclasses.replace(data.convention, regime=regime)
        )
        out[regime] = kit_text(render_kit(data))
    return out


def test_kit_facultative_regime_says_membership_is_optional(
    kits: dict[str, dict[str, str]],
) -> None:
    texts = kits["facultative"]
    for kind in ("special-conditions", "information-notice", "enrolment-form"):
        assert "contrat collectif à adhésion facultative" in texts[kind].lower(), kind
        assert "obligatoire" not in texts[kind], kind
    assert "L'adhésion est facultative et individuelle" in texts["special-conditions"]
    for kind in ("special-conditions", "information-notice", "membership-agreement"):
        assert "décret n° 2022-581" in texts[kind], kind
    assert "7,00 €" in texts["special-conditions"]
    assert "adhésion facultative" in texts["access-letter"]
    assert "trente jours de reprise continue" in texts["information-notice"]


def test_kit_mandatory_regime_says_membership_is_compulsory(
    kits: dict[str, dict[str, str]],
) -> None:
    texts = kits["mandatory"]
    for kind in (
        "special-conditions",
        "information-notice",
        "enrolment-form",
        "membership-agreement",
        "access-letter",
    ):
        assert "contrat collectif à adhésion obligatoire" in texts[kind].lower(), kind
        assert "facultative" not in texts[kind], kind
    for kind in ("special-conditions", "information-notice", "membership-agreement"):
        assert "L'adhésion aux garanties minimales est obligatoire" in texts[kind], kind
        assert "dispense prévus par décret" in texts[kind], kind
        assert "loi de 2025" in texts[kind], kind
    special = texts["special-conditions"]
    assert "au moins 50 % de la cotisation des garanties minimales" in special
    assert "7,00 € par mois (20 %" not in special
    assert "trente jours consécutifs de reprise du travail" in special
    assert "trente jours consécutifs de reprise du travail" in texts["information-notice"]


def test_regime_wording_lives_in_labels_with_a_neutral_fallback() -> None:
    assert labels.regime("facultative") == "contrat collectif à adhésion facultative"
    assert labels.regime("mandatory") == "contrat collectif à adhésion obligatoire"
    assert labels.regime("autre") == "contrat collectif"
    assert labels.regime_wording("mandatory")["name"] == labels.regime("mandatory")


def test_convention_regime_defaults_to_facultative_and_is_returned(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    assert convention["regime"] == "facultative"
    r = client.post("/api/v1/conventions", json=MANDATORY, headers=staff)
    assert r.status_code == 201, r.json
    assert r.json["regime"] == "mandatory"
    got = client.get(f"/api/v1/conventions/{r.json['id']}", headers=staff).json
    assert got["regime"] == "mandatory"
    listed = client.get("/api/v1/conventions?cdg=81", headers=staff).json["items"]
    assert sorted(c["regime"] for c in listed) == ["facultative", "mandatory"]


@pytest.mark.parametrize("value", ["obligatoire", "", "MANDATORY", 1, None])
def test_convention_regime_unknown_value_is_refused(
    client: FlaskClient, staff: dict[str, str], value: Any
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    r = client.post("/api/v1/conventions", json={**CONVENTION, "regime": value}, headers=staff)
    assert_error(r, 422, "invalid_field", "regime")
    assert client.get("/api/v1/conventions", headers=staff).json["items"] == []


def test_convention_patch_regime_unknown_value_is_refused(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    url = f"/api/v1/conventions/{convention['id']}"
    r = client.patch(url, json={"regime": "collective"}, headers=staff)
    assert_error(r, 422, "invalid_field", "regime")
    assert client.get(url, headers=staff).json["regime"] == "facultative"


def test_facultative_convention_refuses_a_contribution_under_seven_euros(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    payload = employer_payload(convention["id"], contribution={"mode": "flat", "amount": "5.00"})
    r = client.post("/api/v1/employers", json=payload, headers=staff)
    assert_error(r, 422, "contribution_below_minimum", "contribution.amount")


def test_mandatory_convention_takes_a_positive_contribution_and_leaves_half_to_each_agent(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    zero = employer_payload(convention["id"], contribution={"mode": "flat", "amount": "0.00"})
    r = client.post("/api/v1/employers", json=zero, headers=staff)
    assert_error(r, 422, "contribution_below_minimum", "contribution.amount")
    assert client.get("/api/v1/employers?cdg=81", headers=staff).json["items"] == []
    low = employer_payload(convention["id"], contribution={"mode": "flat", "amount": "5.00"})
    r = client.post("/api/v1/employers", json=low, headers=staff)
    assert r.status_code == 201, r.json
    assert r.json["contribution"] == {"mode": "flat", "amount": "5.00"}


def test_regime_change_to_facultative_is_refused_while_an_employer_pays_under_seven_euros(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    low = employer_payload(convention["id"], contribution={"mode": "flat", "amount": "5.00"})
    assert client.post("/api/v1/employers", json=low, headers=staff).status_code == 201
    url = f"/api/v1/conventions/{convention['id']}"
    r = client.patch(url, json={"regime": "facultative", "base_rate": "2.50"}, headers=staff)
    assert_error(r, 422, "contribution_below_minimum", "regime")
    assert "Albi" in r.json["error"]["message"]
    after = client.get(url, headers=staff).json
    assert (after["regime"], after["base_rate"]) == ("mandatory", "2.30")  # nothing half-written
    r = client.patch(
        "/api/v1/employers/21810004800014",
        json={"contribution": {"mode": "flat", "amount": "9.00"}},
        headers=staff,
    )
    assert r.status_code == 200, r.json
    r = client.patch(url, json={"regime": "facultative"}, headers=staff)
    assert r.status_code == 200, r.json
    assert r.json["regime"] == "facultative"


def test_employer_moved_to_a_facultative_convention_must_pay_seven_euros(
    client: FlaskClient, staff: dict[str, str], convention: dict[str, Any]
) -> None:
    mandatory = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    low = employer_payload(mandatory["id"], contribution={"mode": "flat", "amount": "5.00"})
    assert client.post("/api/v1/employers", json=low, headers=staff).status_code == 201
    r = client.patch(
        "/api/v1/employers/21810004800014",
        json={"convention_id": convention["id"]},
        headers=staff,
    )
    assert_error(r, 422, "contribution_below_minimum", "contribution.amount")
    got = client.get("/api/v1/employers/21810004800014", headers=staff).json
    assert got["convention_id"] == mandatory["id"]


def test_check_half_refuses_under_half_of_the_minimum_guarantees_in_the_mandatory_regime() -> None:
    premium = Decimal("34.50")  # 2,30 % of 1 500 €
    with pytest.raises(InvalidInput) as caught:
        check_half(regime="mandatory", premium=premium, contribution=Decimal("17.24"))
    assert caught.value.code == "contribution_below_half"
    assert "17,25" in caught.value.message and "50 %" in caught.value.message
    check_half(regime="mandatory", premium=premium, contribution=Decimal("17.25"))
    check_half(regime="facultative", premium=premium, contribution=Decimal("7.00"))


def test_parse_contribution_floor_follows_the_regime() -> None:
    scheme = {"mode": "by_category", "amounts": {"A": "3.00", "B": "8.00"}, "criteria": "x" * 12}
    with pytest.raises(InvalidInput) as caught:
        parse_contribution(scheme)
    assert (caught.value.code, caught.value.field) == (
        "contribution_below_minimum",
        "contribution.amounts.A",
    )
    assert parse_contribution(scheme, regime="mandatory").amounts["A"] == Decimal("3.00")


def test_issued_kit_of_a_mandatory_convention_says_membership_is_compulsory(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    payload = employer_payload(convention["id"])
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    record_prerequisites(client.application, "21810004800014")
    kit = client.post("/api/v1/employers/21810004800014/kits", json={}, headers=staff)
    assert kit.status_code == 201, kit.json
    pdf = client.get(
        f"/api/v1/kits/{kit.json['id']}/documents/special-conditions.pdf", headers=staff
    )
    text = pdftotext(pdf.data)
    assert "Contrat collectif à adhésion obligatoire" in text
    assert "L'adhésion aux garanties minimales est obligatoire" in text
    assert "facultative" not in text


def test_staff_employer_page_names_the_regime_in_words(
    app: Flask, client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    payload = employer_payload(convention["id"])
    assert client.post("/api/v1/employers", json=payload, headers=staff).status_code == 201
    sign_in(app, client, "pages@assureur.fr")
    page = client.get("/employeurs/21810004800014").get_data(as_text=True)
    assert "contrat collectif à adhésion obligatoire" in page
    assert "mandatory" not in page
    form = client.get("/employeurs/nouveau").get_data(as_text=True)
    assert "contrat collectif à adhésion obligatoire" in form


def test_demo_convention_is_explicitly_facultative() -> None:
    assert DEMO["regime"] == "facultative"


def test_simulation_of_a_mandatory_convention_reports_a_contribution_under_half(
    client: FlaskClient, staff: dict[str, str]
) -> None:
    assert client.post("/api/v1/cdgs", json=CDG81, headers=staff).status_code == 201
    convention = client.post("/api/v1/conventions", json=MANDATORY, headers=staff).json
    url = f"/api/v1/conventions/{convention['id']}/simulation"
    # 1 000 € → 23,00 € of minimum guarantees: 5 € is under half (11,50 €), told, not refused
    low = client.get(url, query_string={"gross": "1000", "contribution": "5"}, headers=staff)
    assert low.status_code == 200, low.json
    assert low.json["contribution_paid"] == "5.00"
    assert any("50 %" in n and "11,50" in n for n in low.json["notes"]), low.json["notes"]
    # 400 € → 9,20 €: 5 € covers half, nothing to say
    ok = client.get(url, query_string={"gross": "400", "contribution": "5"}, headers=staff)
    assert ok.status_code == 200 and not any("50 %" in n for n in ok.json["notes"])
    # the facultative regime keeps its 7,00 € floor
    facultative = client.post(
        "/api/v1/conventions",
        json={**CONVENTION, "reference": "CDG81-PREV-FAC-2029"},
        headers=staff,
    ).json
    r = client.get(
        f"/api/v1/conventions/{facultative['id']}/simulation",
        query_string={"gross": "1000", "contribution": "5"},
        headers=staff,
    )
    assert_error(r, 422, "contribution_below_minimum", "contribution")
