"""The service's error hierarchy, and the one place where errors become HTTP answers.

Domain functions raise a `ServiceError` subclass with a machine code and a French message;
`register_error_handlers` turns it (and errors of the `storage` and `signing` packages) into JSON
for the API and an HTML page for the browser.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from signing.errors import VerificationBusy
from storage import StorageError


class ServiceError(Exception):
    status = 400
    code = "bad_request"
    message = "Requête invalide."

    def __init__(
        self, message: str | None = None, *, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        if code:
            self.code = code
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error}


class InvalidInput(ServiceError):
    """A rule or a field is not respected (422)."""

    status = 422
    code = "invalid_input"
    message = "Donnée invalide."


class NotFound(ServiceError):
    status = 404
    code = "not_found"
    message = "Introuvable."


class Conflict(ServiceError):
    status = 409
    code = "conflict"
    message = "Conflit avec l'état actuel."


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"
    message = "Authentification requise."


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    message = "Action non autorisée pour ce rôle."


class TooManyRequests(ServiceError):
    status = 429
    code = "too_many_attempts"
    message = "Trop de tentatives : réessayez plus tard."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.retry_after = retry_after


class PayloadTooLarge(ServiceError):
    status = 413
    code = "too_large"
    message = "Fichier trop volumineux."


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"
    message = "Service momentanément indisponible."


_HTTP_MESSAGES = {
    400: ("bad_request", "Requête invalide."),
    401: ("unauthorized", "Authentification requise."),
    403: ("forbidden", "Action non autorisée."),
    404: ("not_found", "Page ou ressource introuvable."),
    405: ("method_not_allowed", "Méthode non autorisée pour cette adresse."),
    413: ("too_large", "Fichier trop volumineux."),
    415: ("unsupported_media_type", "Type de contenu non pris en charge."),
    429: ("too_many_attempts", "Trop de tentatives : réessayez plus tard."),
}


def _wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def error_response(error: ServiceError) -> Response:
    if _wants_json():
        response = jsonify(error.to_dict())
    else:
        response = Response(
            render_template("error.html", error=error), mimetype="text/html; charset=utf-8"
        )
    response.status_code = error.status
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        return error_response(error)

    @app.errorhandler(StorageError)
    def _storage_error(error: StorageError) -> Response:
        app.logger.exception("storage error")
        return error_response(
            Unavailable("Le stockage des documents est momentanément indisponible.")
        )

    @app.errorhandler(VerificationBusy)
    def _verification_busy(error: VerificationBusy) -> Response:
        mapped = Unavailable(
            "Le service de vérification des signatures est très sollicité : votre fichier n'a "
            "pas été examiné ni conservé, réessayez dans quelques instants.",
            code="verification_busy",
        )
        response = error_response(mapped)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Response:
        mapped = ServiceError(
            "Le formulaire a expiré ou n'est pas valide : rechargez la page et recommencez.",
            code="csrf_failed",
        )
        return error_response(mapped)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("http_error", "Erreur de la requête."))
        mapped = ServiceError(message, code=code)
        mapped.status = status
        response = error_response(mapped)
        # keep what the exception says beyond its body: `Allow` on 405, `Retry-After`…
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unexpected error")
        mapped = ServiceError(
            "Erreur interne : l'incident a été journalisé.", code="internal_error"
        )
        mapped.status = 500
        return error_response(mapped)
