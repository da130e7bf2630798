"""The rules and the formatting, as pure functions (no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from service import formatting
from service.errors import InvalidInput
from service.reference.rules import (
    luhn_valid,
    normalize_siret,
    parse_amount,
    parse_contribution,
    siret_from_siren,
)
from service.reference.simulation import Option, simulate


@pytest.mark.parametrize(
    ("gross", "premium", "share"),
    [("1500.00", "34.50", "19.50"), ("1700.00", "39.10", "24.10"), ("2000.00", "46.00", "31.00")],
)
def test_simulation_reproduces_the_seed_table(gross: str, premium: str, share: str) -> None:
    result = simulate(
        base_rate=Decimal("2.30"),
        available_options=(),
        elements={"gross": gross},
        contribution="15.00",
    )
    assert result.premium == Decimal(premium)
    assert result.contribution_paid == Decimal("15.00")
    assert result.employee_share == Decimal(share)


def test_simulation_rounds_cents_half_up() -> None:
    # 1234.50 × 2.30 % = 28.3935 → 28.39 ; 1234.70 × 2.30 % = 28.3981 → 28.40 ; x.xx5 goes up
    r = simulate(
        base_rate=Decimal("2.30"),
        available_options=(),
        elements={"gross": "1234.50"},
        contribution=None,
    )
    assert r.premium == Decimal("28.39")
    r = simulate(
        base_rate=Decimal("2.50"),
        available_options=(),
        elements={"gross": "1000.20"},
        contribution=None,
    )
    assert r.premium == Decimal("25.01")  # 25.005 rounds half up


def test_simulation_caps_contribution_at_the_premium() -> None:
    r = simulate(
        base_rate=Decimal("2.30"),
        available_options=(),
        elements={"gross": "300.00"},
        contribution="15.00",
    )
    assert r.premium == Decimal("6.90")
    assert r.contribution_paid == Decimal("6.90")
    assert r.employee_share == Decimal("0.00")
    assert any("plafonnée" in n for n in r.notes)


def test_simulation_sums_included_elements_and_ignores_excluded_ones() -> None:
    r = simulate(
        base_rate=Decimal("2.30"),
        available_options=(),
        elements={
            "tbi": "1200.00",
            "nbi": "50.00",
            "ri": "200.00",
            "cti": "50.00",
            "ir": "30.00",
            "sft": "75.00",
        },
        contribution="15.00",
    )
    assert r.base == Decimal("1500.00")
    assert r.premium == Decimal("34.50")
    assert len(r.notes) == 2 and all("exclu" in n for n in r.notes)


def test_simulation_adds_chosen_option_rates() -> None:
    options = (Option("deces", "Décès", Decimal("0.30")),)
    r = simulate(
        base_rate=Decimal("2.30"),
        available_options=options,
        elements={"gross": "1500.00"},
        contribution="15.00",
        option_codes=["deces"],
    )
    assert r.rate == Decimal("2.60")
    assert r.premium == Decimal("39.00")
    with pytest.raises(InvalidInput) as err:
        simulate(
            base_rate=Decimal("2.30"),
            available_options=options,
            elements={"gross": "1500.00"},
            contribution="15.00",
            option_codes=["nope"],
        )
    assert err.value.code == "unknown_option"


def test_simulation_refuses_a_contribution_below_the_minimum() -> None:
    with pytest.raises(InvalidInput) as err:
        simulate(
            base_rate=Decimal("2.30"),
            available_options=(),
            elements={"gross": "1500"},
            contribution="6.99",
        )
    assert err.value.code == "contribution_below_minimum"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"mode": "flat", "amount": "6.99"}, "contribution_below_minimum"),
        ({"mode": "flat", "amount": "15 %"}, "contribution_not_an_amount"),
        ({"mode": "percent", "rate": "50"}, "contribution_not_an_amount"),
        ({"mode": "flat", "amount": "quinze"}, "contribution_not_an_amount"),
        ({"mode": "flat"}, "contribution_not_an_amount"),
        ("15.00", "contribution_not_an_amount"),
        (
            {"mode": "by_category", "amounts": {"A": "7.00", "B": "12.00"}},
            "modulation_criteria_missing",
        ),
        (
            {"mode": "by_category", "amounts": {"A": "5.00"}, "criteria": "Catégorie hiérarchique"},
            "contribution_below_minimum",
        ),
        (
            {"mode": "by_category", "amounts": {"D": "9.00"}, "criteria": "Catégorie hiérarchique"},
            "invalid_category",
        ),
    ],
)
def test_contribution_rules_refuse_bad_schemes(raw: object, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_contribution(raw)
    assert err.value.code == code
    assert err.value.message  # French sentence for the user


def test_contribution_accepts_flat_and_modulated_amounts() -> None:
    assert parse_contribution({"mode": "flat", "amount": "7,00"}).amount == Decimal("7.00")
    scheme = parse_contribution(
        {
            "mode": "by_category",
            "amounts": {"C": 18, "A": "7.00", "B": "12.5"},
            "criteria": "Selon la catégorie hiérarchique",
        }
    )
    assert list(scheme.amounts) == ["A", "B", "C"]
    assert scheme.to_json()["amounts"] == {"A": "7.00", "B": "12.50", "C": "18.00"}


def test_amounts_with_more_than_two_decimals_are_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_amount(15.005, field="x")


def test_siret_luhn_check() -> None:
    assert normalize_siret("218 100 048 00014") == "21810004800014"
    for bad in ("21810004800019", "2181000480001", "abc", ""):
        with pytest.raises(InvalidInput) as err:
            normalize_siret(bad)
        assert err.value.code == "invalid_siret"
    siret = siret_from_siren("218100014")
    assert len(siret) == 14 and siret.startswith("2181000140001") and luhn_valid(siret)


def test_french_formatting() -> None:
    nbsp = "\u00a0"
    assert formatting.money(Decimal("1234.5")) == f"1{nbsp}234,50{nbsp}€"
    assert formatting.money("15") == f"15,00{nbsp}€"
    assert formatting.money(Decimal("1234567.891")) == f"1{nbsp}234{nbsp}567,89{nbsp}€"
    assert formatting.long_date(date(2025, 1, 1)) == "1er janvier 2025"
    assert formatting.long_date(date(2022, 4, 20)) == "20 avril 2022"
    assert formatting.long_date(date(2030, 12, 31)) == "31 décembre 2030"
    assert formatting.percent(Decimal("2.3")) == f"2,30{nbsp}%"
