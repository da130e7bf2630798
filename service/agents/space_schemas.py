"""Request shapes of the agents' space, used by the API and the pages alike."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.agents.space import PASSWORD_MAX, Beneficiary
from service.errors import InvalidInput
from service.labels import RELATIONSHIPS
from service.schema_types import documented

#: a beneficiary's share in percent: up to two decimals, a comma or a dot
SHARE: dict[str, Any] = {
    "description": "part en pourcent, deux décimales au plus (les parts totalisent 100)",
    "anyOf": [
        {"type": "string", "pattern": r"^[0-9]{1,3}(?:[.,][0-9]{1,2})?$"},
        {"type": "number", "minimum": 0, "maximum": 100},
    ],
    "examples": ["33.34"],
}
RELATIONSHIP: dict[str, Any] = {"type": "string", "enum": list(RELATIONSHIPS)}


class ActivateIn(BaseModel):
    """`POST /agents/activate`: the e-mailed link's token and the password chosen."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=PASSWORD_MAX)


class AgentSessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(max_length=PASSWORD_MAX)


class BeneficiaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    birth_date: date
    relationship: str = Field(json_schema_extra=documented(RELATIONSHIP))
    share: str | float = Field(json_schema_extra=documented(SHARE))


class DesignationIn(BaseModel):
    """`PUT /agents/me/beneficiaries`: the standard clause, or named beneficiaries."""

    model_config = ConfigDict(extra="forbid")
    clause: Literal["standard", "specific"]
    beneficiaries: list[BeneficiaryIn] = Field(default_factory=list, max_length=10)


def share_value(raw: str | float, *, index: int) -> Decimal:
    try:
        value = Decimal(str(raw).strip().replace(",", "."))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise InvalidInput(
            f"La part du bénéficiaire n° {index + 1} est un pourcentage (par exemple 33,34).",
            code="invalid_share",
            field=f"beneficiaries.{index}.share",
        )
    return value


def beneficiaries(data: DesignationIn) -> list[Beneficiary]:
    return [
        Beneficiary(
            name=item.name,
            birth_date=item.birth_date,
            relationship=item.relationship,
            share=share_value(item.share, index=index),
        )
        for index, item in enumerate(data.beneficiaries)
    ]
