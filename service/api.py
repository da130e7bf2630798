"""The `/api/v1` blueprint: authentication, request parsing and the OpenAPI description.

Views register with `@route(...)`, which records the path, roles and request/response shapes so
that `/api/v1/openapi.json` describes exactly what is served.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ValidationError

from service.accounts.auth import Principal, authenticate_bearer
from service.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from service.formatting import NBSP
from service.schema_types import EMAIL, NO_NUL, TRIMMED

bp = Blueprint("api", __name__, url_prefix="/api/v1")

M = TypeVar("M", bound=BaseModel)

_PYDANTIC_MESSAGES = {
    "missing": "Ce champ est obligatoire.",
    "extra_forbidden": "Champ inconnu.",
    "string_too_short": "Valeur trop courte.",
    "string_too_long": "Valeur trop longue.",
    "string_pattern_mismatch": "Format invalide.",
    "date_from_datetime_parsing": "Date invalide : format AAAA-MM-JJ attendu.",
    "date_parsing": "Date invalide : format AAAA-MM-JJ attendu.",
    "date_type": "Date invalide : format AAAA-MM-JJ attendu.",
    "int_parsing": "Nombre entier attendu.",
    "int_type": "Nombre entier attendu.",
    "greater_than_equal": "Valeur trop petite.",
    "less_than_equal": "Valeur trop grande.",
    "value_error": "Valeur invalide.",
    "model_type": "Objet JSON attendu.",
    "list_type": "Liste attendue.",
    "string_type": "Texte attendu.",
}


def field_errors(exc: ValidationError) -> list[InvalidInput]:
    """Every error of a pydantic validation, as French `InvalidInput`s (the API raises the
    first; the pages show them all next to their fields)."""
    errors = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or None
        message = _PYDANTIC_MESSAGES.get(err["type"], "Valeur invalide.")
        if "email" in str(err.get("msg", "")).lower() or (field or "").endswith("email"):
            message = "Adresse électronique invalide."
        errors.append(InvalidInput(message, code="invalid_field", field=field))
    return errors


def parse(model: type[M], data: Any) -> M:
    """Validate a JSON body against a pydantic model; the first error becomes a 422."""
    if data is None:
        raise InvalidInput("Corps JSON attendu.", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise field_errors(exc)[0] from exc


def json_body() -> Any:
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput(
            "Corps JSON attendu (Content-Type: application/json).", code="invalid_json"
        )
    return data


_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def query_int(name: str, default: int) -> int:
    """An integer query parameter within the bounds `QUERY_SCHEMAS` publishes for it: plain
    ASCII digits only (no sign, blank, `_` or other script's digits), else a 422."""
    schema = QUERY_SCHEMAS[name]
    low, high = schema["minimum"], schema["maximum"]
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if _DECIMAL.fullmatch(raw) is None or not low <= int(raw) <= high:
        low_text, high_text = (f"{bound:,}".replace(",", NBSP) for bound in (low, high))
        raise InvalidInput(
            f"Pagination invalide : « {name} » est un nombre entier de {low_text} à {high_text}.",
            code="invalid_pagination",
            field=name,
        )
    return int(raw)


def principal() -> Principal:
    return g.principal


#: a query parameter: its description, or {"description", "schema", "required"}
QuerySpec = str | dict[str, Any]

#: schemas of query parameters that mean the same everywhere (a route may still say otherwise)
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    "offset": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
    "after": {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
}
_CONVERTERS = {
    "int": {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
    # Werkzeug's default converter: one non-empty path segment
    "string": {"type": "string", "minLength": 1, "pattern": "^[^/\\x00]+$"},
}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    roles: tuple[str, ...]
    body: type[BaseModel] | None
    query: dict[str, QuerySpec]
    responses: dict[int, str]
    path_types: dict[str, str]
    files: tuple[str, ...] = ()


OPERATIONS: list[Operation] = []


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _refuse_nul(path_values: dict[str, Any]) -> None:
    """NUL characters name nothing and PostgreSQL refuses them: a 404 in a path, else a 422."""
    if _has_nul(path_values):
        raise NotFound()
    for name, value in request.args.items(multi=True):
        if _has_nul(name) or _has_nul(value):
            raise InvalidInput(
                "Caractère nul interdit dans les paramètres.",
                code="invalid_characters",
                field=None if _has_nul(name) else name,
            )
    if request.is_json and _has_nul(request.get_json(silent=True)):
        raise InvalidInput("Caractère nul interdit dans le corps JSON.", code="invalid_characters")


def route(
    rule: str,
    methods: tuple[str, ...] = ("GET",),
    *,
    summary: str,
    roles: tuple[str, ...] | None = ("admin", "staff"),
    body: type[BaseModel] | None = None,
    query: dict[str, QuerySpec] | None = None,
    responses: dict[int, str] | None = None,
    files: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an API view. `roles=None` means anyone, signed in or not; `files` names the
    fields of a multipart upload."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if roles is not None:
                header = request.headers.get("Authorization", "")
                if not header.startswith("Bearer "):
                    raise Unauthorized("Jeton d'accès manquant (en-tête Authorization: Bearer).")
                who = authenticate_bearer(header[7:].strip())
                if who.role not in roles:
                    raise Forbidden("Votre rôle ne permet pas cette action.")
                g.principal = who
            _refuse_nul(kwargs)
            return view(*args, **kwargs)

        for method in methods:
            OPERATIONS.append(
                Operation(
                    method=method.lower(),
                    path=re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", bp.url_prefix + rule),  # type: ignore[operator]
                    summary=summary,
                    roles=roles or (),
                    body=body,
                    query=query or {},
                    responses=responses or {200: "OK"},
                    files=files,
                    path_types={
                        name: converter or "string"
                        for converter, name in re.findall(r"<(?:(\w+):)?(\w+)>", rule)
                    },
                )
            )
        bp.add_url_rule(rule, view.__name__, wrapper, methods=list(methods))
        return wrapper

    return decorator


def _tighten(node: Any) -> None:
    """Say what the parsing really accepts of plain strings: no blanks around (inputs are
    stripped before their length is checked), and e-mail addresses email-validator takes."""
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not {"pattern", "enum", "const"} & node.keys():
        if node.get("format") == "email":
            node["pattern"] = EMAIL
        elif "format" not in node:
            node["pattern"] = TRIMMED
    for key, value in node.items():
        if key not in ("examples", "default", "const", "enum"):
            _tighten(value)


def _query_parameter(name: str, spec: QuerySpec) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"description": spec}
    return {
        "name": name,
        "in": "query",
        "required": bool(spec.get("required", False)),
        "schema": spec.get("schema")
        or QUERY_SCHEMAS.get(name)
        or {"type": "string", "pattern": NO_NUL},
        "description": spec.get("description", ""),
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        }
    }
    for op in OPERATIONS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower())}".strip("_"),
            "responses": {
                str(code): {"description": text} for code, text in sorted(op.responses.items())
            },
        }
        for code in (401, 403, 404, 422):
            if op.roles or code in (404, 422):
                entry["responses"].setdefault(
                    str(code),
                    {
                        "description": "Erreur",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
        if op.roles:
            entry["security"] = [{"bearer": []}]
            entry["description"] = "Rôles : " + ", ".join(op.roles)
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": dict(_CONVERTERS.get(op.path_types.get(name, ""), _CONVERTERS["string"])),
            }
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        params += [_query_parameter(name, spec) for name, spec in op.query.items()]
        if params:
            entry["parameters"] = params
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            _tighten(schema)
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[op.body.__name__] = schema
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                    }
                },
            }
        if op.files:
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": list(op.files),
                            "properties": {
                                name: {"type": "string", "format": "binary"} for name in op.files
                            },
                        }
                    }
                },
            }
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Service des kits PSC prévoyance",
            "version": "1.0.0",
            "description": "Émission des kits contractuels, retours signés, archivage CDG.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@route("/openapi.json", summary="Description OpenAPI de l'API", roles=None)
def openapi_json() -> Any:
    return jsonify(openapi_document())
