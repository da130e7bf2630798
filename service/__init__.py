"""The PSC kit service: a Flask application over the `signing` and `storage` libraries."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from werkzeug.routing import IntegerConverter

from service.config import Settings
from service.extensions import db

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")
ID_MAX = 2**31 - 1  # ids are INTEGER columns (int4 on PostgreSQL)


def _digits_up_to(limit: int) -> str:
    """A regex of the decimal numbers 1…`limit` (no sign, no leading zero)."""
    top = str(limit)
    n = len(top)
    parts = [rf"[1-9]\d{{0,{n - 2}}}"] if n > 1 else []
    for i, digit in enumerate(top):
        low = "1" if i == 0 else "0"
        if int(digit) > int(low):
            parts.append(rf"{top[:i]}[{low}-{int(digit) - 1}]\d{{{n - i - 1}}}")
    parts.append(top)
    return "(?:" + "|".join(parts) + ")"


class IdConverter(IntegerConverter):
    """`<int:…>` in every route: a positive id within the columns' range. Anything else (0,
    2^63, a hundred digits) matches no route, whatever the method, hence 404, instead of
    overflowing the driver: the bound is in the pattern, since a value refused after matching
    would answer 405 to a method that another route of the same path accepts."""

    regex = _digits_up_to(ID_MAX)

    def __init__(self, map: Any, fixed_digits: int = 0, min: int = 1, max: int = ID_MAX) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max)


def _no_hostname_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("No hostname was supplied")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment; `config` overrides environment variables (tests)."""
    import os

    env = {**os.environ, **(config or {})}
    settings = Settings.from_env(env)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    # before any route is added: every `<int:…>` (blueprints included) binds this converter
    app.url_map.converters["int"] = IdConverter
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # the client address is the N-th X-Forwarded-For entry from the right: the one the
        # outermost trusted proxy saw; the throttles and the audit trail read it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024 + 64 * 1024,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        SESSION_COOKIE_NAME="psc_session",
        PERMANENT_SESSION_LIFETIME=8 * 3600,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["psc.settings"] = settings
    from service.kits.render import keep_layouts_in

    # the kits laid out once per convention and shape, shared by this machine's processes
    keep_layouts_in(settings.instance_path / "kit-layouts")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in (
        "weasyprint",
        "fontTools",
        "botocore",
        "urllib3",
        "alembic.runtime.plugins",
        "pikepdf",  # « pikepdf C++ to Python logger bridge initialized » on every command
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # « No hostname was supplied » for the folder broker (no host by design), in the middle of
    # the commands' progress bars; kombu's other warnings stay
    logging.getLogger("kombu.connection").addFilter(_no_hostname_warning)
    for noisy in ("pyhanko", "pyhanko_certvalidator"):  # logs expected validation failures
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    from service import ratelimit
    from service.extensions import csrf, migrate

    ratelimit.init_app(app, redis_url=settings.redis_url, prefix=settings.ratelimit_prefix)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    if settings.database_url.startswith("sqlite"):
        _sqlite_pragmas(app)

    from service.engine.celery_app import init_celery

    init_celery(app, settings)
    app.config["PSC_OVERRIDES"] = dict(config or {})  # the tests hand them to worker processes

    from service import health as _health  # noqa: F401
    from service import models  # noqa: F401  (registers every table)
    from service import reminders as _reminders  # noqa: F401
    from service.agents import api as _agents_api  # noqa: F401  (issue 11, hB)
    from service.agents import payroll_api as _payroll_api  # noqa: F401  (hG: payroll, follow-up)
    from service.agents import space_api as _agents_space_api  # noqa: F401  (issue 11: the agent's side)
    from service.api import bp as api_bp
    from service.archive import api as _archive_api  # noqa: F401
    from service.archive import bundle_api as _archive_bundle_api  # noqa: F401
    from service.archive import tasks as _archive_tasks  # noqa: F401
    from service.campaigns import api as _campaigns_api  # noqa: F401
    from service.campaigns import letters_api as _letters_api  # noqa: F401
    from service.campaigns import tasks as _campaign_tasks  # noqa: F401
    from service.engine import tasks as _engine_tasks  # noqa: F401
    from service.errors import register_error_handlers
    from service.esign import api as _esign_api  # noqa: F401  (signing in the browser, hF)
    from service.jobs import api as _jobs_api  # noqa: F401
    from service.kits import api as _kits_api  # noqa: F401
    from service.kits import employer_api as _employer_api  # noqa: F401
    from service.mail import tasks as _mail_tasks  # noqa: F401
    from service.pages import adherent as _adherent_pages  # noqa: F401  (issue 11: /adherent)
    from service.pages import agents as _agents_pages  # noqa: F401  (issue 11, hB)
    from service.pages import cdg as _cdg_pages  # noqa: F401
    from service.pages import portal as _portal_pages  # noqa: F401
    from service.pages import proof as _proof_pages  # noqa: F401
    from service.pages import published as _published_pages  # noqa: F401
    from service.pages import queue as _queue_pages  # noqa: F401
    from service.pages import signing as _signing_pages  # noqa: F401  (hF)
    from service.pages import staff as _staff_pages  # noqa: F401
    from service.pages import subscriptions as _subscriptions_pages  # noqa: F401  (hE)
    from service.pages import wording as _wording_pages  # noqa: F401
    from service.pages.blueprint import bp as pages_bp
    from service.published import api as _published_api  # noqa: F401
    from service.reference import api as _reference_api  # noqa: F401
    from service.returns import api as _returns_api  # noqa: F401
    from service.returns import tasks as _returns_tasks  # noqa: F401
    from service.subscriptions import api as _subscriptions_api  # noqa: F401  (hE)

    app.register_blueprint(api_bp)
    app.register_blueprint(pages_bp)
    csrf.init_app(app)
    csrf.exempt(api_bp)  # bearer tokens, no cookies: nothing to forge
    register_error_handlers(app)

    from service.cli import register_cli

    register_cli(app)

    @app.after_request
    def _security_headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; object-src 'self'; frame-src 'self'; "
            "frame-ancestors 'self'; base-uri 'self'; form-action 'self'",
        )
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        if settings.public_url.startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return app


def _sqlite_pragmas(app: Flask) -> None:
    with app.app_context():

        @event.listens_for(db.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLite's lower() folds ASCII only: searching « œuilly » must find « Œuilly »
            dbapi_connection.create_function(
                "lower", 1, lambda v: v.lower() if isinstance(v, str) else v, deterministic=True
            )
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
