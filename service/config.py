"""Configuration from environment variables, with an embedded default for every backend."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app

from service.timeutil import DEFAULT_TIMEZONE


def _secret_key(instance: Path) -> str:
    """Return the instance's secret key, generating it once on first use."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _count(value: str, name: str) -> int:
    """A non-negative integer setting; anything else stops the start with a clear message."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return number


def _seconds(value: str, name: str) -> float:
    """A positive number of seconds; anything else stops the start with a clear message."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return number


def _timezone(name: str) -> str:
    """A known IANA time zone name (checked at start-up, not at the first page that needs it)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"TIMEZONE {name!r}: unknown time zone (e.g. Europe/Paris)") from exc
    return name


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    secret_key: str
    document_store: str
    archive_store: str
    s3_endpoint_url: str | None
    archive_lock_mode: str
    archive_retention_years: int
    signing_pkcs12: str | None
    signing_pkcs12_passphrase: str | None
    signing_trust_roots: str | None
    signing_tsa_url: str | None
    signing_allow_fetching: bool
    mail_url: str
    max_upload_mb: int
    access_code_days: int
    public_url: str
    store_connect_timeout: float = 3.0
    store_read_timeout: float = 10.0
    store_max_attempts: int = 3
    health_timeout: float = 2.0
    upload_quota_count: int = 30
    upload_quota_mb: int = 200
    quarantine_max_age_minutes: int = 60
    redis_url: str | None = None
    #: the Celery queue (one per deployment; the tests give each worker its own)
    task_queue: str = "psc"
    #: a pending job whose message is older than this is sent again by beat's sweep
    task_stale_seconds: int = 300
    #: beat's daily reminder: kits issued at least this many days ago, pieces still missing
    remind_after_days: int = 14
    #: beat's daily fixity check: archived copies re-read and checked
    fixity_sample: int = 20
    #: a failed job waits this long, doubled at each new failure (capped at an hour)
    task_retry_base_seconds: float = 30.0
    #: beat's reminders every N seconds instead of daily at 8:00 (tests, demonstrations)
    remind_schedule_seconds: float | None = None
    trusted_proxies: int = 0
    ratelimit_prefix: str = "psc"
    #: the time zone of every time a person reads (the API stays in UTC)
    timezone: str = DEFAULT_TIMEZONE
    # -- signing in the browser (hF) --
    #: the CA that certifies browser signatures; a development CA in the instance folder if None
    browser_signing_ca_pkcs12: str | None = None
    browser_signing_ca_passphrase: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        instance = Path(env.get("INSTANCE_PATH", "instance")).resolve()
        instance.mkdir(parents=True, exist_ok=True)
        return cls(
            instance_path=instance,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{instance / 'psc.sqlite3'}",
            secret_key=env.get("SECRET_KEY") or _secret_key(instance),
            document_store=env.get("DOCUMENT_STORE") or f"file://{instance / 'documents'}",
            archive_store=env.get("ARCHIVE_STORE") or f"file://{instance / 'archive'}",
            s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
            archive_lock_mode=env.get("ARCHIVE_LOCK_MODE", "GOVERNANCE"),
            archive_retention_years=int(env.get("ARCHIVE_RETENTION_YEARS", "10")),
            signing_pkcs12=env.get("SIGNING_PKCS12") or None,
            signing_pkcs12_passphrase=env.get("SIGNING_PKCS12_PASSPHRASE") or None,
            signing_trust_roots=env.get("SIGNING_TRUST_ROOTS") or None,
            signing_tsa_url=env.get("SIGNING_TSA_URL") or None,
            signing_allow_fetching=env.get("SIGNING_ALLOW_FETCHING", "").lower()
            in ("1", "true", "oui", "yes"),
            mail_url=env.get("MAIL_URL") or f"file://{instance / 'outbox'}",
            max_upload_mb=int(env.get("MAX_UPLOAD_MB", "20")),
            access_code_days=int(env.get("ACCESS_CODE_DAYS", "120")),
            public_url=env.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            store_connect_timeout=float(env.get("STORE_CONNECT_TIMEOUT", "3")),
            store_read_timeout=float(env.get("STORE_READ_TIMEOUT", "10")),
            store_max_attempts=int(env.get("STORE_MAX_ATTEMPTS", "3")),
            health_timeout=float(env.get("HEALTH_TIMEOUT", "2")),
            upload_quota_count=int(env.get("UPLOAD_QUOTA_COUNT", "30")),
            upload_quota_mb=int(env.get("UPLOAD_QUOTA_MB", "200")),
            quarantine_max_age_minutes=int(env.get("QUARANTINE_MAX_AGE_MINUTES", "60")),
            redis_url=env.get("REDIS_URL") or None,
            task_queue=env.get("CELERY_QUEUE") or "psc",
            task_stale_seconds=_count(env.get("TASK_STALE_SECONDS", "300"), "TASK_STALE_SECONDS"),
            remind_after_days=_count(env.get("REMIND_AFTER_DAYS", "14"), "REMIND_AFTER_DAYS"),
            fixity_sample=_count(env.get("ARCHIVE_FIXITY_SAMPLE", "20"), "ARCHIVE_FIXITY_SAMPLE"),
            task_retry_base_seconds=_seconds(
                env.get("TASK_RETRY_BASE_SECONDS") or "30", "TASK_RETRY_BASE_SECONDS"
            ),
            remind_schedule_seconds=_seconds(
                env["REMIND_SCHEDULE_SECONDS"], "REMIND_SCHEDULE_SECONDS"
            )
            if env.get("REMIND_SCHEDULE_SECONDS")
            else None,
            trusted_proxies=_count(env.get("TRUSTED_PROXIES", "0"), "TRUSTED_PROXIES"),
            ratelimit_prefix=env.get("RATELIMIT_PREFIX") or "psc",
            timezone=_timezone(env.get("TIMEZONE") or DEFAULT_TIMEZONE),
            # -- signing in the browser (hF) --
            browser_signing_ca_pkcs12=env.get("BROWSER_SIGNING_CA_PKCS12") or None,
            browser_signing_ca_passphrase=env.get("BROWSER_SIGNING_CA_PASSPHRASE") or None,
        )


def settings() -> Settings:
    """The running app's settings (inside an app context)."""
    return current_app.extensions["psc.settings"]  # type: ignore[no-any-return]
