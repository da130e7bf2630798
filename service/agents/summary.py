"""The CDG's follow-up of agents' memberships: counts and amounts per employer, never a person.

A month's figures follow the payroll file's rule (service.agents.payroll): a membership counts
for a month when its cover has started on or before the month's last day and has not ended
before its first day. The CDG's fee is the convention's `cdg_fee_rate` (1.10 %) of the premiums.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.agents.models import MEMBERSHIP_STATES, Membership
from service.agents.payroll import PAYROLL_STATES, month_end
from service.extensions import db
from service.kits.domain import local_today
from service.reference.models import Cdg, Employer
from service.reference.rules import cents

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class _Row:
    """What the summary reads of a membership: no name, e-mail or birth date."""

    employer_id: int
    state: str
    joins_on: date
    left_on: date | None
    options: list[str]
    premium: Decimal
    employer_contribution: Decimal
    employee_share: Decimal


def _due(row: _Row, month: date) -> bool:
    if row.state not in PAYROLL_STATES or (row.state == "left" and row.left_on is None):
        return False
    return row.joins_on <= month_end(month) and (row.left_on is None or row.left_on >= month)


def _months(first: date, last: date) -> list[date]:
    months, day = [], first.replace(day=1)
    while day <= last:
        months.append(day)
        day = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return months


def this_month() -> date:
    return local_today().replace(day=1)


def agents_summary(cdg: Cdg, *, month: date | None = None) -> dict[str, Any]:
    """Per employer of the CDG: agents by state, options taken, the month's premiums,
    contributions and the CDG's fee, the year's premiums and fee so far (January, or the
    convention's start, to `month`), and the count of memberships due each month since the
    convention started (up to `month`, this month by default)."""
    month = month or this_month()
    employers = db.session.scalars(
        select(Employer)
        .where(Employer.cdg_id == cdg.id)
        .options(selectinload(Employer.convention))
        .order_by(Employer.name, Employer.siret)
    ).all()
    rows = [
        _Row(*r)
        for r in db.session.execute(
            select(
                Membership.employer_id,
                Membership.state,
                Membership.joins_on,
                Membership.left_on,
                Membership.options,
                Membership.premium,
                Membership.employer_contribution,
                Membership.employee_share,
            )
            .join(Employer, Membership.employer_id == Employer.id)
            .where(Employer.cdg_id == cdg.id)
        ).all()
    ]
    by_employer: dict[int, list[_Row]] = {}
    for row in rows:
        by_employer.setdefault(row.employer_id, []).append(row)

    items = []
    totals = Counter[str]()
    money_totals = dict.fromkeys(
        ("premiums", "employer_contributions", "cdg_fee", "premiums_year", "cdg_fee_year"), ZERO
    )
    for employer in employers:
        convention = employer.convention
        mine = by_employer.get(employer.id, [])
        states = Counter(r.state for r in mine)
        labels = {o["code"]: o["label"] for o in convention.options}
        taken = Counter(code for r in mine if r.state != "left" for code in r.options or [])
        due = [r for r in mine if _due(r, month)]
        premiums = sum((Decimal(r.premium) for r in due), ZERO)
        contributions = sum((Decimal(r.employer_contribution) for r in due), ZERO)
        fee = cents(premiums * Decimal(convention.cdg_fee_rate) / Decimal(100))
        # the year so far: the CDG charges its fee on the premiums of the year
        year_months = _months(max(convention.starts_on, month.replace(month=1)), month)
        premiums_year = sum(
            (Decimal(r.premium) for m in year_months for r in mine if _due(r, m)), ZERO
        )
        fee_year = cents(premiums_year * Decimal(convention.cdg_fee_rate) / Decimal(100))
        start = max(convention.starts_on, date(month.year - 10, 1, 1))
        progress = [
            {"month": f"{m:%Y-%m}", "memberships": sum(1 for r in mine if _due(r, m))}
            for m in _months(start, month)
        ]
        items.append(
            {
                "siret": employer.siret,
                "name": employer.name,
                "agents": {state: states.get(state, 0) for state in MEMBERSHIP_STATES},
                "options": [
                    {"code": code, "label": labels.get(code, code), "count": taken.get(code, 0)}
                    for code in [*labels, *sorted(set(taken) - set(labels))]
                ],
                "memberships_due": len(due),
                "premiums": f"{premiums:.2f}",
                "employer_contributions": f"{contributions:.2f}",
                "employee_shares": f"{premiums - contributions:.2f}",
                "cdg_fee_rate": f"{Decimal(convention.cdg_fee_rate):.2f}",
                "cdg_fee": f"{fee:.2f}",
                "premiums_year": f"{premiums_year:.2f}",
                "cdg_fee_year": f"{fee_year:.2f}",
                "progress": progress,
            }
        )
        for state in MEMBERSHIP_STATES:
            totals[state] += states.get(state, 0)
        money_totals["premiums"] += premiums
        money_totals["employer_contributions"] += contributions
        money_totals["cdg_fee"] += fee
        money_totals["premiums_year"] += premiums_year
        money_totals["cdg_fee_year"] += fee_year
    return {
        "cdg": cdg.code,
        "month": f"{month:%Y-%m}",
        "totals": {
            "agents": {state: totals.get(state, 0) for state in MEMBERSHIP_STATES},
            **{k: f"{v:.2f}" for k, v in money_totals.items()},
        },
        "employers": items,
    }
