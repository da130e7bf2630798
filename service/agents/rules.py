"""Who may join and from when (DESIGN.md "Agents", "Regimes"), as pure functions.

Every refusal raises `InvalidInput` with a machine code, the field it concerns and a French
message; nothing here reads the database.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta

from service.errors import InvalidInput
from service.formatting import long_date

#: continuous days back at work before an agent returning from sick leave may join (without a
#: previous collective contract; always in a mandatory regime)
RETURN_DAYS = 30
#: the youngest and oldest plausible ages of an agent at the start of cover
MIN_AGE, MAX_AGE = 15, 80


def person_key(last_name: str, first_name: str, birth_date: date) -> str:
    """The same person whatever the accents, case, hyphens or spaces: « Éloïse  Durand-Pré »
    and « eloise durand pre » share a key."""

    def norm(text: str) -> str:
        plain = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in plain if not unicodedata.combining(ch)).casefold()
        return " ".join(re.findall(r"[a-z0-9]+", plain))

    return f"{norm(last_name)}|{norm(first_name)}|{birth_date.isoformat()}"


def check_situation(
    *,
    in_normal_service: bool,
    paid_by_hour_or_day: bool,
    on_sick_leave: bool,
    returned_on: date | None,
    previous_collective_contract: bool,
    joins_on: date,
    mandatory: bool,
) -> None:
    """May this agent join on `joins_on`? (normal service, not paid by the hour or day, not on
    sick leave, back long enough)."""
    if not in_normal_service:
        raise InvalidInput(
            "Seuls les agents en position d'activité normale peuvent adhérer.",
            code="agent_not_in_normal_service",
            field="in_normal_service",
        )
    if paid_by_hour_or_day:
        raise InvalidInput(
            "Un agent rémunéré à l'heure ou à la vacation ne peut pas adhérer.",
            code="agent_paid_by_hour_or_day",
            field="paid_by_hour_or_day",
        )
    if on_sick_leave:
        raise InvalidInput(
            "Un agent en arrêt de maladie ne peut pas adhérer : enregistrez son adhésion après "
            "sa reprise.",
            code="agent_on_sick_leave",
            field="on_sick_leave",
        )
    if returned_on is None:
        return
    if returned_on > joins_on:
        raise InvalidInput(
            "La reprise après l'arrêt de maladie est postérieure au début de la garantie.",
            code="agent_return_too_recent",
            field="returned_on",
        )
    if previous_collective_contract and not mandatory:
        return  # covered before: from the effective return
    earliest = returned_on + timedelta(days=RETURN_DAYS)
    if joins_on < earliest:
        raise InvalidInput(
            f"Après un arrêt de maladie, l'agent adhère après {RETURN_DAYS} jours de reprise "
            f"continue : pas avant le {long_date(earliest)}.",
            code="agent_return_too_recent",
            field="returned_on",
        )


def check_birth_date(birth_date: date, *, joins_on: date) -> None:
    age = (
        joins_on.year
        - birth_date.year
        - ((joins_on.month, joins_on.day) < (birth_date.month, birth_date.day))
    )
    if not MIN_AGE <= age <= MAX_AGE:
        raise InvalidInput(
            f"Date de naissance invraisemblable : l'agent aurait {age} ans au début de la "
            "garantie.",
            code="invalid_birth_date",
            field="birth_date",
        )


def check_joins_on(
    joins_on: date, *, convention_start: date, convention_end: date, cover_start: date | None
) -> None:
    """The start of cover: a first of a month, inside the convention, not before the kit's."""
    if joins_on.day != 1:
        raise InvalidInput(
            "La garantie commence le premier jour d'un mois.",
            code="joins_on_not_first_of_month",
            field="joins_on",
        )
    if not convention_start <= joins_on <= convention_end:
        raise InvalidInput(
            f"La garantie commence pendant la convention, du {long_date(convention_start)} au "
            f"{long_date(convention_end)}.",
            code="joins_on_outside_convention",
            field="joins_on",
        )
    if cover_start is not None and joins_on < cover_start:
        raise InvalidInput(
            "La garantie de l'agent ne peut pas commencer avant celle de la collectivité, le "
            f"{long_date(cover_start)}.",
            code="joins_on_before_cover",
            field="joins_on",
        )
