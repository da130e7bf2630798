"""Request shapes of the reference-data API (pydantic); the rules live in `rules` and `domain`."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from service.labels import EMPLOYER_KINDS
from service.schema_types import (
    CAPITAL,
    CDG_CODE,
    CONTRIBUTION,
    DATABASE_ID,
    RATE,
    SIRET,
    documented,
)

KIND: dict[str, Any] = {"type": "string", "enum": list(EMPLOYER_KINDS)}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CdgIn(_In):
    code: str = Field(pattern=r"^[0-9A-Z]{2,3}$")
    name: str = Field(min_length=2, max_length=200)
    email: EmailStr


class CdgPatch(_In):
    name: str | None = Field(default=None, min_length=2, max_length=200)
    email: EmailStr | None = None


class OptionIn(_In):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,30}$")
    label: str = Field(min_length=2, max_length=200)
    rate: str | float = Field(json_schema_extra=documented(RATE))


class ConventionIn(_In):
    cdg: str = Field(json_schema_extra=documented(CDG_CODE))
    reference: str = Field(min_length=2, max_length=60)
    insurer: str = Field(min_length=2, max_length=200)
    manager: str = Field(min_length=2, max_length=200)
    starts_on: date
    ends_on: date
    base_rate: str | float = Field(json_schema_extra=documented(RATE))
    options: list[OptionIn] = Field(default_factory=list)
    cdg_fee_rate: str | float = Field(default="1.10", json_schema_extra=documented(RATE))
    template_set: str = Field(default="default", pattern=r"^[a-z0-9_-]{1,60}$")
    insurer_legal_form: str | None = Field(default=None, min_length=2, max_length=120)
    insurer_capital: str | float | None = Field(
        default=None, json_schema_extra=documented(CAPITAL, nullable=True)
    )
    insurer_register: str | None = Field(default=None, min_length=2, max_length=120)
    insurer_address: str | None = Field(default=None, min_length=5, max_length=300)
    #: the regime in force (`REGIMES`): décret n° 2022-581 or the compulsory membership
    regime: Literal["facultative", "mandatory"] = "facultative"


class ConventionPatch(_In):
    insurer: str | None = Field(default=None, min_length=2, max_length=200)
    manager: str | None = Field(default=None, min_length=2, max_length=200)
    starts_on: date | None = None
    ends_on: date | None = None
    base_rate: str | float | None = Field(
        default=None, json_schema_extra=documented(RATE, nullable=True)
    )
    options: list[OptionIn] | None = None
    cdg_fee_rate: str | float | None = Field(
        default=None, json_schema_extra=documented(RATE, nullable=True)
    )
    template_set: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,60}$")
    insurer_legal_form: str | None = Field(default=None, min_length=2, max_length=120)
    insurer_capital: str | float | None = Field(
        default=None, json_schema_extra=documented(CAPITAL, nullable=True)
    )
    insurer_register: str | None = Field(default=None, min_length=2, max_length=120)
    insurer_address: str | None = Field(default=None, min_length=5, max_length=300)
    regime: Literal["facultative", "mandatory"] | None = None


class EmployerIn(_In):
    siret: str = Field(json_schema_extra=documented(SIRET))
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(json_schema_extra=documented(KIND))
    address: str = Field(min_length=5, max_length=400)
    email: EmailStr
    cdg: str = Field(json_schema_extra=documented(CDG_CODE))
    convention_id: int = Field(json_schema_extra=documented(DATABASE_ID))
    headcount: int = Field(ge=0, le=100000)
    cst_opinion_on: date
    deliberation_on: date
    joins_on: date | None = None
    contribution: Any = Field(json_schema_extra=documented(CONTRIBUTION))
    signatory_gender: Literal["F", "M"] | None = None


class EmployerPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: str | None = Field(default=None, json_schema_extra=documented(KIND, nullable=True))
    address: str | None = Field(default=None, min_length=5, max_length=400)
    email: EmailStr | None = None
    convention_id: int | None = Field(
        default=None, json_schema_extra=documented(DATABASE_ID, nullable=True)
    )
    headcount: int | None = Field(default=None, ge=0, le=100000)
    cst_opinion_on: date | None = None
    deliberation_on: date | None = None
    joins_on: date | None = None
    contribution: Any = Field(
        default=None, json_schema_extra=documented(CONTRIBUTION, nullable=True)
    )
    signatory_gender: Literal["F", "M"] | None = None
