from __future__ import annotations

from flask import Blueprint, request

from service.errors import InvalidInput

bp = Blueprint("pages", __name__)


@bp.before_request
def _refuse_nul() -> None:
    """A NUL character names nothing a person types, and PostgreSQL refuses it in text: a form
    field or a query parameter holding one is refused (422, the error page) before any view."""
    for values in (request.args, request.form):
        for name, value in values.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise InvalidInput(
                    "Caractère nul interdit dans le formulaire ou l'adresse : "
                    "corrigez la saisie et recommencez.",
                    code="invalid_characters",
                    field=None if "\x00" in name else name,
                )
