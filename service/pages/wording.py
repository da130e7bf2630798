"""Jinja filters of `service.wording`: the employer's designation, long dates, plurals, the
SIRET in groups (`218 100 048 00014`)."""

from __future__ import annotations

from typing import Any

from service.formatting import capitalize_first, money, percent, siret
from service.labels import piece_result, piece_state, regime
from service.pages.blueprint import bp
from service.wording import (
    after_colon,
    agree,
    counted,
    employer_designation,
    long_when,
)


def _the(employer: Any) -> str:
    return employer_designation(employer).the


def _of_the(employer: Any) -> str:
    return employer_designation(employer).of_the


for _name, _filter in {
    "long_when": long_when,
    "the": _the,
    "of_the": _of_the,
    "capitalize_first": capitalize_first,
    "money": money,
    "percent": percent,
    "siret": siret,
    "after_colon": after_colon,
    "piece_state": piece_state,
    "piece_result": piece_result,
}.items():
    bp.add_app_template_filter(_filter, _name)

bp.add_app_template_global(counted, "counted")
bp.add_app_template_global(agree, "agree")

# -- issue 12: the regime in force, in words ---------------------------------------------------
bp.add_app_template_filter(regime, "regime")
