"""The one shape of a membership (the BAI) for the API, the portal's form, the import and the
filled-in BAI; the rules live in `agents.rules` and `agents.domain`."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from service.agents.models import AGENT_CATEGORIES, AGENT_STATUSES, BASE_COMPONENTS
from service.schema_types import documented

#: a monthly gross pay element in euros (0 allowed), a dot or a comma before the cents
PAY: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^(?:0|[1-9][0-9]{0,5})(?:[.,][0-9]{2})?$"},
        {"type": "integer", "minimum": 0, "maximum": 999_999},
    ],
    "examples": ["1500.00"],
}

#: the columns of the import (and its template), in order: the JSON field names, the base's
#: components by their own names
IMPORT_COLUMNS: tuple[str, ...] = (
    "last_name",
    "first_name",
    "birth_date",
    "email",
    "status",
    "category",
    "paid_by_hour_or_day",
    "in_normal_service",
    "on_sick_leave",
    "returned_on",
    "previous_collective_contract",
    "has_individual_contract",
    *BASE_COMPONENTS,
    "options",
    "joins_on",
)
BOOLEAN_FIELDS = (
    "paid_by_hour_or_day",
    "in_normal_service",
    "on_sick_leave",
    "previous_collective_contract",
    "has_individual_contract",
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BaseIn(_In):
    """Monthly gross pay elements in the base (assiette); `ir` and `sft` are never counted."""

    tbi: str | int = Field(json_schema_extra=documented(PAY))
    nbi: str | int = Field(default="0", json_schema_extra=documented(PAY))
    ri: str | int = Field(default="0", json_schema_extra=documented(PAY))
    cti: str | int = Field(default="0", json_schema_extra=documented(PAY))
    ir: str | int | None = Field(default=None, json_schema_extra=documented(PAY, nullable=True))
    sft: str | int | None = Field(default=None, json_schema_extra=documented(PAY, nullable=True))


class MembershipIn(_In):
    last_name: str = Field(min_length=1, max_length=100)
    first_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    email: EmailStr
    status: Literal[AGENT_STATUSES]  # type: ignore[valid-type]
    category: Literal[AGENT_CATEGORIES]  # type: ignore[valid-type]
    paid_by_hour_or_day: bool = False
    in_normal_service: bool = True
    on_sick_leave: bool = False
    returned_on: date | None = None
    previous_collective_contract: bool = False
    has_individual_contract: bool = False
    base: BaseIn
    options: list[str] = Field(default_factory=list, max_length=20)
    joins_on: date


class LeaveIn(_In):
    left_on: date
    reason: str = Field(min_length=2, max_length=500)
