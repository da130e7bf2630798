"""French formatting of amounts, rates and dates, as users read them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

NBSP = "\u00a0"
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def money(value: Decimal | str | int | float | None) -> str:
    """`Decimal("1234.5")` → `1 234,50 €` (non-breaking spaces)."""
    if value is None or value == "":
        return ""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    sign = "-" if amount < 0 else ""
    whole, cents = f"{abs(amount):.2f}".split(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{NBSP.join(groups)},{cents}{NBSP}€"


def percent(value: Decimal | str | float) -> str:
    """`Decimal("2.30")` → `2,30 %`."""
    return f"{Decimal(str(value)):.2f}".replace(".", ",") + f"{NBSP}%"


def long_date(value: date | None) -> str:
    """`date(2025, 1, 1)` → `1er janvier 2025`; `date(2022, 4, 20)` → `20 avril 2022`."""
    if value is None:
        return ""
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {MONTHS[value.month - 1]} {value.year}"


def short_date(value: date | None) -> str:
    return "" if value is None else f"{value:%d/%m/%Y}"


def group_code(code: str, size: int = 4) -> str:
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


def siret(value: str) -> str:
    """`21810004800019` → `218 100 048 00019`."""
    return f"{value[:3]} {value[3:6]} {value[6:9]} {value[9:]}" if len(value) == 14 else value
