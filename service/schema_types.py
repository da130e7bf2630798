"""What the OpenAPI description says of loosely typed request fields.

Some fields are parsed by the domain rules rather than by pydantic (rates, amounts, the
contribution object): pydantic alone would describe them as "any string". These JSON-schema
fragments state the shape the rules accept, so that every request the description allows is
accepted, apart from rules no schema can state (a SIRET's checksum, dates in the convention's
period, references to other records). Used through `Field(json_schema_extra=documented(…))`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: no NUL character anywhere (PostgreSQL cannot store one): such requests are refused
NO_NUL = r"^[^\x00]*$"
#: no leading or trailing blank either: input strings are stripped before their length is checked
TRIMMED = r"^[^\s\x00](?:[^\x00]*[^\s\x00])?$"
#: a conservative subset of what email-validator accepts (no special-use or quoted parts)
EMAIL = (
    r"^[A-Za-z0-9]{1,20}(?:[._+-][A-Za-z0-9]{1,20}){0,2}"
    r"@[a-z0-9]{1,20}(?:-[a-z0-9]{1,20}){0,2}(?:\.[a-z0-9]{1,20}){0,2}\.(?:fr|eu|com|org|net)$"
)
RATE: dict[str, Any] = {
    "description": "taux en pourcent, strictement entre 0 et 100, trois décimales au plus",
    "anyOf": [
        {"type": "string", "pattern": r"^(?:[1-9][0-9]?(?:[.,][0-9]{1,3})?|0[.,][0-9]{0,2}[1-9])$"},
        {"type": "integer", "minimum": 1, "maximum": 99},
    ],
    "examples": ["2.30"],
}
#: a monthly contribution in euros: at least 7,00 € (décret 2022-581), at most 99 999,99 €
AMOUNT: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(?:[7-9]|[1-9][0-9]{1,4})(?:[.,][0-9]{2})?$",
    "examples": ["15.00"],
}
CONTRIBUTION: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "required": ["mode", "amount"],
            "additionalProperties": False,
            "properties": {"mode": {"const": "flat"}, "amount": AMOUNT},
        },
        {
            "type": "object",
            "required": ["mode", "amounts", "criteria"],
            "additionalProperties": False,
            "properties": {
                "mode": {"const": "by_category"},
                "amounts": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {category: AMOUNT for category in "ABC"},
                },
                "criteria": {
                    "type": "string",
                    "pattern": r"^[^\s\x00][^\x00]{8,1998}[^\s\x00]$",
                },
            },
        },
    ],
    "examples": [{"mode": "flat", "amount": "15.00"}],
}
#: the insurer's share capital in euros (a positive amount, spaces and a decimal comma allowed)
CAPITAL: dict[str, Any] = {
    "description": "capital social de l'assureur, en euros",
    "anyOf": [
        {"type": "string", "pattern": r"^[1-9][0-9]{0,12}(?:[.,][0-9]{1,2})?$"},
        {"type": "integer", "minimum": 1, "maximum": 99_999_999_999_999},
    ],
    "examples": ["681879255"],
}
SIRET: dict[str, Any] = {"type": "string", "pattern": r"^[0-9]{14}$"}
CDG_CODE: dict[str, Any] = {"type": "string", "pattern": r"^[0-9A-Z]{2,3}$"}
DATABASE_ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2_147_483_647}


def documented(schema: dict[str, Any], *, nullable: bool = False) -> Callable[[dict], None]:
    """A `json_schema_extra` that replaces what pydantic generated with `schema`."""

    def apply(generated: dict[str, Any]) -> None:
        kept = {k: generated[k] for k in ("title", "default") if k in generated}
        generated.clear()
        generated.update(kept)
        if nullable:
            generated["anyOf"] = [dict(schema), {"type": "null"}]
        else:
            generated.update(schema)

    return apply
