"""Time helpers: the database stores naive UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Europe/Paris"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset, for the API."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def local(dt: datetime, zone: str = DEFAULT_TIMEZONE) -> datetime:
    """A stored naive UTC datetime as an aware datetime in `zone` (what a person reads)."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(zone))
