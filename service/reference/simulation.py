"""The premium simulator: premium, contribution actually paid, employee share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from service.errors import InvalidInput
from service.reference.rules import MINIMUM_CONTRIBUTION, cents, check_half, parse_amount

#: pay elements included in the premium base (assiette)
INCLUDED = {
    "tbi": "traitement brut indiciaire (y compris l'indemnité compensatrice de CSG)",
    "nbi": "nouvelle bonification indiciaire",
    "ri": "régime indemnitaire (IFSE…)",
    "cti": "complément de traitement indiciaire",
}
#: pay elements accepted but excluded from the base
EXCLUDED = {
    "ir": "indemnité de résidence",
    "sft": "supplément familial de traitement",
    "variable": "rémunération variable",
}


#: spaces people and spreadsheets put between thousands: space, no-break, narrow no-break, thin
_THOUSANDS = re.compile(r"(?<=\d)[ \u00a0\u202f\u2009](?=\d{3}(?:\D|$))")


def normalize_amount(value: Any) -> Any:
    """`1 500`, `1 500,00` (also with a no-break or narrow no-break space) → `1500`, `1500,00`.

    Only spaces grouping thousands go; anything else is left for `parse_amount` to judge."""
    if not isinstance(value, str):
        return value
    return _THOUSANDS.sub("", value.strip())


#: a negative amount as people type it: `-5`, `- 5,00`, `−1 500`
_NEGATIVE = re.compile(r"^[-\u2212]\s*\d[\d\s\u00a0\u202f\u2009]*(?:[.,]\d*)?$")


def _amount(value: Any, *, field: str, code: str = "invalid_amount") -> Decimal:
    """`parse_amount` with the messages a person reads: « 15,00 » as the example, and a
    negative amount told as such (not « illisible »)."""
    value = normalize_amount(value)
    negative = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if (isinstance(value, str) and _NEGATIVE.match(value)) or (negative and value < 0):
        raise InvalidInput(
            "Le montant doit être positif, par exemple «\u00a015,00\u00a0».", code=code, field=field
        )
    try:
        return parse_amount(value, field=field, code=code)
    except InvalidInput as exc:
        if "« 15.00 »" not in exc.message:
            raise
        raise InvalidInput(
            exc.message.replace("« 15.00 »", "«\u00a015,00\u00a0»"), code=exc.code, field=exc.field
        ) from exc


@dataclass(frozen=True)
class Option:
    code: str
    label: str
    rate: Decimal


@dataclass(frozen=True)
class Simulation:
    base: Decimal
    rate: Decimal
    premium: Decimal
    contribution: Decimal
    contribution_paid: Decimal
    employee_share: Decimal
    options: tuple[Option, ...]
    notes: tuple[str, ...]


def simulate(
    *,
    base_rate: Decimal,
    available_options: Iterable[Option],
    elements: Mapping[str, str],
    contribution: str | None,
    option_codes: Iterable[str] = (),
    regime: str = "facultative",
) -> Simulation:
    """Compute one agent's monthly premium from pay elements given as strings.

    `regime` is the convention's: the facultative one refuses a contribution under 7,00 €; the
    mandatory one has no such floor but wants half the premium of the minimum guarantees
    (options excluded), told in a note when a contribution is given and falls short."""
    notes: list[str] = []
    if elements.get("gross") not in (None, ""):
        base = _amount(elements["gross"], field="gross")
        if any(elements.get(k) not in (None, "") for k in INCLUDED):
            raise InvalidInput(
                "Indiquez soit le brut (gross), soit ses éléments (tbi, nbi, ri, cti).",
                code="ambiguous_base",
                field="gross",
            )
    else:
        given = {k: elements[k] for k in INCLUDED if elements.get(k) not in (None, "")}
        if not given:
            raise InvalidInput(
                "Indiquez la rémunération brute (gross) ou ses éléments (tbi, nbi, ri, cti).",
                code="missing_base",
                field="gross",
            )
        base = sum((_amount(v, field=k) for k, v in given.items()), Decimal("0.00"))
    for key, label in EXCLUDED.items():
        if elements.get(key) not in (None, ""):
            _amount(elements[key], field=key)
            notes.append(f"L'{label} ({key}) est exclue de l'assiette de cotisation : ignorée.")

    by_code = {o.code: o for o in available_options}
    chosen: list[Option] = []
    for code in option_codes:
        if code not in by_code:
            raise InvalidInput(
                f"Option inconnue pour cette convention : « {code} ».",
                code="unknown_option",
                field="options",
            )
        if by_code[code] not in chosen:
            chosen.append(by_code[code])
    rate = base_rate + sum((o.rate for o in chosen), Decimal(0))
    premium = cents(base * rate / Decimal(100))

    amount = (
        _amount(contribution, field="contribution", code="contribution_not_an_amount")
        if contribution not in (None, "")
        else Decimal("0.00")
    )
    if regime == "mandatory":
        if amount > 0:
            try:
                check_half(
                    regime=regime,
                    premium=cents(base * base_rate / Decimal(100)),
                    contribution=amount,
                )
            except InvalidInput as exc:
                notes.append(exc.message)
    elif Decimal(0) < amount < MINIMUM_CONTRIBUTION and premium >= MINIMUM_CONTRIBUTION:
        raise InvalidInput(
            "La participation doit être d'au moins 7,00 € par mois et par agent.",
            code="contribution_below_minimum",
            field="contribution",
        )
    paid = min(amount, premium)
    if paid < amount:
        notes.append("La participation est plafonnée au montant de la cotisation.")
    return Simulation(
        base=base,
        rate=rate,
        premium=premium,
        contribution=amount,
        contribution_paid=paid,
        employee_share=premium - paid,
        options=tuple(chosen),
        notes=tuple(notes),
    )
