"""Payroll: what the employer's payroll software needs to declare the contract in the DSN (the
payroll settings, as JSON and as a PDF/A), and the month's file of agents' premiums.

The DSN names the contract in block S21.G00.15 (adhésion prévoyance) and each agent's
affiliation in block S21.G00.70 (option and population codes); the agent's premium goes in
S21.G00.81 (cotisation individuelle, code 059) on the base S21.G00.78 (type 31). The settings say
which value goes where, in the words a payroll person uses.

Which memberships a month's file holds: every membership registered by the employer whose cover
has started on or before the month's last day and has not ended before the month's first day.
`invited` memberships are included: the cover and the premium run from the date of effect
whether or not the agent has created their personal account. A departure during the month makes
the month due in full (never prorated, like the employer contribution).
"""

from __future__ import annotations

import hashlib
import re
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from jinja2 import TemplateNotFound
from sqlalchemy import or_, select
from weasyprint import HTML

from service import formatting, labels
from service.agents.models import Membership
from service.audit.domain import record
from service.csvfile import csv_text
from service.errors import InvalidInput
from service.extensions import db
from service.kits.domain import current_kit, first_of_month_from, local_today
from service.kits.lifecycle import CANCELLED, state_of
from service.kits.render import _insurer_identity, template_set
from service.reference.models import Convention, Employer
from service.reference.simulation import EXCLUDED, INCLUDED

#: the files named in download events (French titles in service.labels.DOCUMENTS)
SETTINGS_FILE = "payroll-settings.pdf"
PAYROLL_FILE = "payroll.csv"
#: memberships a month's file may hold (a `left` one while its departure is in or after the month)
PAYROLL_STATES = ("invited", "active", "left")
#: population codes (S21.G00.70.005) the settings give the payroll
POPULATION_ALL = "ENSEMBLE"
#: the option code (S21.G00.70.004) of the base guarantees every agent has
BASE_OPTION = "SOCLE"
CSV_HEADERS = (
    "Référence d'adhésion",
    "Nom",
    "Prénom",
    "Catégorie",
    "Code population",
    "Date d'effet",
    "Date de sortie",
    "Assiette",
    "Taux",
    "Cotisation",
    "Participation employeur",
    "Part agent",
    "Options",
)
_MONTH = re.compile(r"(\d{4})-(\d{2})")
ZERO = Decimal("0.00")


# -- the month -----------------------------------------------------------------------------------


def parse_month(raw: str | None) -> date:
    """`2025-03` → 1 March 2025; anything else is a 422 `invalid_month`."""
    match = _MONTH.fullmatch(raw or "")
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise InvalidInput(
            "Mois invalide : indiquez-le au format AAAA-MM, par exemple « 2025-03 ».",
            code="invalid_month",
            field="month",
        )
    return date(int(match.group(1)), int(match.group(2)), 1)


def month_end(month: date) -> date:
    return month.replace(day=monthrange(month.year, month.month)[1])


def month_label(month: date) -> str:
    """1 March 2025 → « mars 2025 »."""
    return f"{formatting.MONTHS[month.month - 1]} {month.year}"


# -- populations and options -----------------------------------------------------------------------


def population_code(employer: Employer, category: str) -> str:
    """The population an agent is declared in: one per category when the employer's contribution
    depends on it, else the whole staff."""
    if employer.contribution.get("mode") == "by_category":
        return f"CAT-{category}"
    return POPULATION_ALL


def dsn_option_code(code: str) -> str:
    """An option's code in the DSN (S21.G00.70.004): `perte_retraite` → `PERTE-RETRAITE`."""
    return code.upper().replace("_", "-")


def _option_labels(convention: Convention) -> dict[str, str]:
    return {o["code"]: o["label"] for o in convention.options}


# -- the month's file --------------------------------------------------------------------------


@dataclass(frozen=True)
class PayrollRow:
    reference: str
    last_name: str
    first_name: str
    category: str
    population: str
    joins_on: date
    left_on: date | None
    base: Decimal
    rate: Decimal
    premium: Decimal
    employer_contribution: Decimal
    employee_share: Decimal
    options: tuple[str, ...]  # labels (the CSV)
    option_codes: tuple[str, ...]  # the convention's codes (the JSON)


@dataclass(frozen=True)
class PayrollMonth:
    employer: Employer
    month: date
    rows: list[PayrollRow] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Decimal]:
        return {
            "base": sum((r.base for r in self.rows), ZERO),
            "premium": sum((r.premium for r in self.rows), ZERO),
            "employer_contribution": sum((r.employer_contribution for r in self.rows), ZERO),
            "employee_share": sum((r.employee_share for r in self.rows), ZERO),
        }


def _rate(convention: Convention, options: list[str]) -> Decimal:
    rates = {o["code"]: Decimal(o["rate"]) for o in convention.options}
    return Decimal(convention.base_rate) + sum((rates.get(c, ZERO) for c in options), ZERO)


def payroll_month(employer: Employer, month: date) -> PayrollMonth:
    """The memberships due for `month` (see the module's docstring), by name."""
    first, last = month, month_end(month)
    memberships = db.session.scalars(
        select(Membership)
        .where(
            Membership.employer_id == employer.id,
            Membership.state.in_(PAYROLL_STATES),
            Membership.joins_on <= last,
            or_(Membership.left_on.is_(None), Membership.left_on >= first),
        )
        .order_by(Membership.last_name, Membership.first_name, Membership.reference)
    ).all()
    labels = _option_labels(employer.convention)
    rows = [
        PayrollRow(
            reference=m.reference,
            last_name=m.last_name,
            first_name=m.first_name,
            category=m.category,
            population=population_code(employer, m.category),
            joins_on=m.joins_on,
            left_on=m.left_on,
            base=Decimal(m.base_amount),
            rate=_rate(employer.convention, m.options or []),
            premium=Decimal(m.premium),
            employer_contribution=Decimal(m.employer_contribution),
            employee_share=Decimal(m.employee_share),
            options=tuple(labels.get(code, code) for code in m.options or []),
            option_codes=tuple(m.options or []),
        )
        for m in memberships
        # a membership marked `left` without a date cannot be placed: it is not due
        if m.state != "left" or m.left_on is not None
    ]
    return PayrollMonth(employer=employer, month=month, rows=rows)


def plain_amount(value: Decimal) -> str:
    """`Decimal("1234.5")` → `1234,50`: what a spreadsheet reads as a number."""
    return f"{Decimal(value):.2f}".replace(".", ",")


def payroll_csv(payroll: PayrollMonth) -> str:
    """One row per agent, `;`, UTF-8 with BOM; no totals line (they are in the JSON)."""
    return csv_text(
        CSV_HEADERS,
        (
            (
                r.reference,
                r.last_name,
                r.first_name,
                r.category,
                r.population,
                formatting.short_date(r.joins_on),
                formatting.short_date(r.left_on),
                plain_amount(r.base),
                plain_amount(r.rate) + " %",
                plain_amount(r.premium),
                plain_amount(r.employer_contribution),
                plain_amount(r.employee_share),
                ", ".join(r.options),
            )
            for r in payroll.rows
        ),
    )


def payroll_json(payroll: PayrollMonth) -> dict[str, Any]:
    return {
        "siret": payroll.employer.siret,
        "month": f"{payroll.month:%Y-%m}",
        "count": len(payroll.rows),
        "totals": {k: f"{v:.2f}" for k, v in payroll.totals.items()},
        "rows": [
            {
                "reference": r.reference,
                "last_name": r.last_name,
                "first_name": r.first_name,
                "category": r.category,
                "population": r.population,
                "joins_on": r.joins_on.isoformat(),
                "left_on": r.left_on.isoformat() if r.left_on else None,
                "base": f"{r.base:.2f}",
                "rate": f"{r.rate:.2f}",
                "premium": f"{r.premium:.2f}",
                "employer_contribution": f"{r.employer_contribution:.2f}",
                "employee_share": f"{r.employee_share:.2f}",
                "options": list(r.option_codes),
            }
            for r in payroll.rows
        ],
    }


# -- the payroll settings ------------------------------------------------------------------------


def payroll_settings(employer: Employer) -> dict[str, Any]:
    """What the payroll needs to declare the contract (amounts and rates as decimal strings)."""
    convention = employer.convention
    kit = current_kit(employer)
    if kit is not None and state_of(kit) is CANCELLED:
        kit = None
    contract_reference = kit.reference if kit is not None else convention.reference
    starts_on = (
        kit.cover_starts_on
        if kit is not None and kit.cover_starts_on
        else first_of_month_from(employer.joins_on)
    )
    scheme = employer.contribution
    if scheme.get("mode") == "by_category":
        populations = [
            {
                "code": f"CAT-{cat}",
                "label": f"Agents de catégorie {cat}",
                "employer_contribution": f"{Decimal(amount):.2f}",
            }
            for cat, amount in sorted(scheme["amounts"].items())
        ]
        criteria = scheme.get("criteria") or "Catégorie hiérarchique (A, B, C)."
    else:
        populations = [
            {
                "code": POPULATION_ALL,
                "label": "Ensemble du personnel",
                "employer_contribution": f"{Decimal(scheme['amount']):.2f}",
            }
        ]
        criteria = None
    options = [
        {
            "code": None,
            "dsn_code": BASE_OPTION,
            "label": "Garanties de base",
            "rate": f"{convention.base_rate:.2f}",
        }
    ] + [
        {
            "code": o["code"],
            "dsn_code": dsn_option_code(o["code"]),
            "label": o["label"],
            "rate": f"{Decimal(o['rate']):.2f}",
        }
        for o in convention.options
    ]
    return {
        "employer": {"siret": employer.siret, "name": employer.name},
        "contract": {
            "reference": contract_reference,
            "kit_reference": kit.reference if kit is not None else None,
            "convention_reference": convention.reference,
            "cdg": convention.cdg.name,
            "regime": convention.regime,
            "starts_on": starts_on.isoformat(),
            "convention_ends_on": convention.ends_on.isoformat(),
        },
        "insurer": {"name": convention.insurer, "identification": _insurer_identity(convention)},
        "manager": {"name": convention.manager},
        "populations": populations,
        "options": options,
        "rates": {
            "base_rate": f"{convention.base_rate:.2f}",
            "options": {o["code"]: f"{Decimal(o['rate']):.2f}" for o in convention.options},
        },
        "base": {
            "included": [{"code": k, "label": v} for k, v in INCLUDED.items()],
            "excluded": [{"code": k, "label": v} for k, v in EXCLUDED.items()],
        },
        "employer_contribution": {
            "mode": scheme.get("mode"),
            "unit": "euros par mois et par agent",
            "criteria": criteria,
            "capped_at_premium": True,
            "prorated": False,
        },
        "dsn": [
            {
                "block": "S21.G00.15.001",
                "label": "Référence du contrat de prévoyance",
                "value": contract_reference,
            },
            {
                "block": "S21.G00.15.002",
                "label": "Code organisme de prévoyance",
                "value": "communiqué par l'assureur (fiche de paramétrage)",
            },
            {
                "block": "S21.G00.15.003",
                "label": "Code délégataire de gestion",
                "value": f"{convention.manager} : communiqué par le gestionnaire",
            },
            {
                "block": "S21.G00.70.004",
                "label": "Code option retenue par l'agent",
                "value": " / ".join(o["dsn_code"] for o in options),
            },
            {
                "block": "S21.G00.70.005",
                "label": "Code population de rattachement",
                "value": " / ".join(p["code"] for p in populations),
            },
            {
                "block": "S21.G00.70.014",
                "label": "Date de début d'affiliation",
                "value": "date d'effet de l'adhésion (fichier mensuel)",
            },
            {
                "block": "S21.G00.78.001",
                "label": "Code de base assujettie",
                "value": "31 – éléments de cotisation prévoyance, santé, retraite supplémentaire",
            },
            {
                "block": "S21.G00.81.001",
                "label": "Code de cotisation",
                "value": "059 – cotisation individuelle prévoyance-assurance-mutuelle",
            },
        ],
    }


def render_settings_pdf(employer: Employer, settings: dict[str, Any]) -> bytes:
    """The payroll settings as a PDF/A-2b in French, laid out with the kit's fonts and styles."""
    templates = template_set(employer.convention.template_set)
    try:
        template = templates.env.get_template("payroll-settings.html")
    except TemplateNotFound:
        templates = template_set("default")
        template = templates.env.get_template("payroll-settings.html")
    html = template.render(
        s=settings,
        employer=employer,
        starts_on=date.fromisoformat(settings["contract"]["starts_on"]),
        ends_on=employer.convention.ends_on,
        made_on=local_today(),
        regime=formatting.capitalize_first(
            labels.regime_wording(settings["contract"]["regime"])["name"]
        ),
    )
    document = HTML(string=html, base_url=str(templates.html_dir) + "/").render(
        stylesheets=[templates.stylesheet], font_config=templates.fonts
    )
    return document.write_pdf(pdf_variant="pdf/a-2b")


# -- downloads --------------------------------------------------------------------------------


def record_payroll_download(
    employer: Employer,
    *,
    file: str,
    data: bytes,
    actor: str,
    address: str | None,
    month: date | None = None,
) -> None:
    """Every download is an event (who, from where, the file and its SHA-256), on the employer's
    current kit's trail when it has one. The caller commits before serving the file."""
    kit = current_kit(employer)
    details: dict[str, Any] = {"file": file}
    if month is not None:
        details["month"] = f"{month:%Y-%m}"
    record(
        "downloaded",
        actor=actor,
        kit_id=kit.id if kit is not None else None,
        siret=employer.siret,
        address=address,
        sha256_after=hashlib.sha256(data).hexdigest(),
        details=details,
    )
