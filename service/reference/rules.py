"""The rules of décret n°2022-581 as the CDGs apply them, as pure functions.

Every refusal raises `InvalidInput` with a machine code and a French message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from service.errors import InvalidInput
from service.formatting import money

MINIMUM_CONTRIBUTION = Decimal("7.00")  # 20 % of the 35 € reference amount
MAXIMUM_AMOUNT = Decimal("100000")
CATEGORIES = ("A", "B", "C")
CENT = Decimal("0.01")

_AMOUNT_RE = re.compile(r"^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*(?:€|EUR)?\s*$")


def cents(value: Decimal) -> Decimal:
    """Round to the cent, half up (the rounding the seed tables use)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def parse_amount(value: Any, *, field: str, code: str = "invalid_amount") -> Decimal:
    """An amount in euros: `"15.00"`, `"15,00"`, `15` or `15.5`; never a percentage."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput("Un montant en euros est attendu.", code=code, field=field)
    if isinstance(value, int | float | Decimal):
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise InvalidInput("Montant illisible.", code=code, field=field) from exc
        if not amount.is_finite() or amount < 0 or amount != cents(amount):
            raise InvalidInput(
                "Le montant doit être positif, en euros et centimes.", code=code, field=field
            )
        return cents(amount)
    if isinstance(value, str):
        if "%" in value:
            raise InvalidInput(
                "La participation s'exprime en euros par mois, jamais en pourcentage.",
                code="contribution_not_an_amount",
                field=field,
            )
        match = _AMOUNT_RE.match(value)
        if match:
            return cents(Decimal(f"{match.group(1)}.{match.group(2) or '0'}"))
    raise InvalidInput(
        "Montant illisible : indiquez des euros, par exemple « 15.00 ».", code=code, field=field
    )


def parse_rate(value: Any, *, field: str) -> Decimal:
    """A rate in percent, e.g. `"2.30"`, strictly between 0 and 100."""
    try:
        rate = Decimal(str(value).replace(",", ".").strip()) if value is not None else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or not Decimal(0) < rate < Decimal(100):
        raise InvalidInput(
            "Le taux doit être un pourcentage entre 0 et 100, par exemple « 2.30 ».",
            code="invalid_rate",
            field=field,
        )
    if rate != rate.quantize(Decimal("0.001")):
        raise InvalidInput("Le taux a au plus trois décimales.", code="invalid_rate", field=field)
    return rate


def parse_capital(value: Any, *, field: str = "insurer_capital") -> Decimal | None:
    """A share capital in euros (`"681879255"`, `"1 234,50"`), positive; None when not given."""
    if value is None or value == "":
        return None
    try:
        text = str(value).replace("\u00a0", "").replace(" ", "").replace(",", ".").strip()
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0 or amount >= Decimal("1e14"):
        raise InvalidInput(
            "Le capital social est un montant en euros, par exemple « 681879255 ».",
            code="invalid_capital",
            field=field,
        )
    return amount.quantize(Decimal("0.01"))


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalize_siret(value: Any) -> str:
    siret = re.sub(r"[\s.]", "", str(value or ""))
    if not re.fullmatch(r"\d{14}", siret):
        raise InvalidInput("Le SIRET compte 14 chiffres.", code="invalid_siret", field="siret")
    if not luhn_valid(siret):
        raise InvalidInput(
            "Ce SIRET n'est pas valide (clé de contrôle incorrecte).",
            code="invalid_siret",
            field="siret",
        )
    return siret


def siret_from_siren(siren: str, establishment: int = 1) -> str:
    """A valid SIRET for a SIREN: NIC `000N` plus the Luhn check digit (head office is 1)."""
    base = f"{siren}{establishment:04d}"
    for check in range(10):
        if luhn_valid(base + str(check)):
            return base + str(check)
    raise AssertionError("unreachable: one digit always completes a Luhn number")


@dataclass(frozen=True)
class Contribution:
    """The employer's monthly contribution per agent, flat or modulated by category."""

    mode: str
    amount: Decimal | None = None
    amounts: dict[str, Decimal] = field(default_factory=dict)
    criteria: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.mode == "flat":
            return {"mode": "flat", "amount": f"{self.amount:.2f}"}
        return {
            "mode": self.mode,
            "amounts": {k: f"{v:.2f}" for k, v in self.amounts.items()},
            "criteria": self.criteria,
        }

    @property
    def lowest(self) -> Decimal:
        return self.amount if self.mode == "flat" else min(self.amounts.values())  # type: ignore[return-value]


def _check_minimum(amount: Decimal, field: str, regime: str = "facultative") -> Decimal:
    if regime == "mandatory":
        # the floor of the mandatory regime is half of each agent's premium of the minimum
        # guarantees, which depends on the agent's pay: checked per agent (`check_half`)
        if amount <= 0:
            raise InvalidInput(
                "Dans un contrat à adhésion obligatoire, la participation est due : indiquez un "
                "montant mensuel positif.",
                code="contribution_below_minimum",
                field=field,
            )
    elif amount < MINIMUM_CONTRIBUTION:
        raise InvalidInput(
            "La participation doit être d'au moins 7,00 € par mois et par agent "
            "(20 % du montant de référence de 35 €).",
            code="contribution_below_minimum",
            field=field,
        )
    if amount > MAXIMUM_AMOUNT:
        raise InvalidInput("Montant invraisemblable.", code="invalid_amount", field=field)
    return amount


def parse_contribution(raw: Any, *, regime: str = "facultative") -> Contribution:
    """The scheme of `raw`; `regime` is its convention's: the 7,00 € floor of the facultative
    regime, a positive amount in the mandatory one (whose 50 % is checked per agent)."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            "La participation est un objet : "
            '{"mode": "flat", "amount": "15.00"} ou {"mode": "by_category", …}.',
            code="contribution_not_an_amount",
            field="contribution",
        )
    mode = raw.get("mode")
    if mode in ("percent", "percentage", "rate") or "rate" in raw or "percent" in raw:
        raise InvalidInput(
            "La participation s'exprime en euros par mois, jamais en pourcentage.",
            code="contribution_not_an_amount",
            field="contribution",
        )
    if mode == "flat":
        amount = parse_amount(
            raw.get("amount"), field="contribution.amount", code="contribution_not_an_amount"
        )
        return Contribution("flat", amount=_check_minimum(amount, "contribution.amount", regime))
    if mode == "by_category":
        amounts_raw = raw.get("amounts")
        if not isinstance(amounts_raw, dict) or not amounts_raw:
            raise InvalidInput(
                "Indiquez un montant par catégorie (A, B, C).",
                code="contribution_not_an_amount",
                field="contribution.amounts",
            )
        amounts: dict[str, Decimal] = {}
        for category, value in amounts_raw.items():
            if category not in CATEGORIES:
                raise InvalidInput(
                    f"Catégorie inconnue : « {category} » (attendu : A, B ou C).",
                    code="invalid_category",
                    field="contribution.amounts",
                )
            f = f"contribution.amounts.{category}"
            amounts[category] = _check_minimum(
                parse_amount(value, field=f, code="contribution_not_an_amount"), f, regime
            )
        criteria = str(raw.get("criteria") or "").strip()
        if len(criteria) < 10:
            raise InvalidInput(
                "Une participation modulée doit énoncer ses critères (par exemple la catégorie "
                "hiérarchique ou la situation familiale).",
                code="modulation_criteria_missing",
                field="contribution.criteria",
            )
        ordered = {c: amounts[c] for c in CATEGORIES if c in amounts}
        return Contribution("by_category", amounts=ordered, criteria=criteria[:2000])
    raise InvalidInput(
        "Mode de participation inconnu : « flat » ou « by_category ».",
        code="contribution_not_an_amount",
        field="contribution.mode",
    )


# -- The mandatory regime (issue 12) ------------------------------------------------------------


def check_half(
    *, regime: str, premium: Decimal, contribution: Decimal, field: str = "contribution"
) -> None:
    """In the mandatory regime the employer pays at least 50 % of the agent's premium of the
    minimum guarantees (`premium`, options excluded): `contribution_below_half` otherwise.

    Only an agent's pay gives that premium, so the check runs where it is known (an agent's
    registration, a simulation); the facultative regime keeps its 7,00 € floor instead."""
    if regime != "mandatory":
        return
    half = cents(premium / 2)
    if contribution < half:
        raise InvalidInput(
            "Dans un contrat à adhésion obligatoire, la collectivité prend en charge au moins "
            f"50 % de la cotisation des garanties minimales, soit {money(half)} par mois ici "
            f"(participation prévue : {money(contribution)}).",
            code="contribution_below_half",
            field=field,
        )
