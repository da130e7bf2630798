"""Rate limits on the `limits` library: shared in Redis when `REDIS_URL` is set, in the process's
memory otherwise (one process: the embedded default).

A `Rule` is a named set of moving windows ("5 per 15 minutes", "10 per hour"…): several windows
of growing length make a stepped backoff that lifts by itself with time. Callers `check` a rule
before the guarded action (a `TooManyRequests` carrying `Retry-After` when any window is full),
`hit` it on failure and `clear` it on success.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.errors import StorageError as LimitsStorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from service.errors import TooManyRequests, Unavailable

EXTENSION = "psc.ratelimiter"


@dataclass(frozen=True)
class Rule:
    name: str
    windows: tuple[RateLimitItem, ...]

    @classmethod
    def of(cls, name: str, spec: str) -> Rule:
        """`Rule.of("portal-address", "20/15 minutes; 100/day")`."""
        return cls(name, tuple(parse_many(spec)))


class RateLimiter:
    def __init__(self, storage_uri: str, *, prefix: str) -> None:
        self.storage: Storage = storage_from_string(storage_uri, wrap_exceptions=True)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.prefix = prefix

    def _ids(self, rule: Rule, identifiers: tuple[str, ...]) -> tuple[str, ...]:
        return (self.prefix, rule.name, *identifiers)

    def retry_after(self, rule: Rule, *identifiers: str) -> int | None:
        """Seconds until the rule lets one more attempt through; None when it does now."""
        ids = self._ids(rule, identifiers)
        wait = 0.0
        with _storage_errors():
            for window in rule.windows:
                if not self.strategy.test(window, *ids):
                    reset = self.strategy.get_window_stats(window, *ids).reset_time
                    wait = max(wait, reset - time.time(), 1.0)
        return math.ceil(wait) if wait else None

    def check(self, rule: Rule, *identifiers: str, message: str | None = None) -> None:
        wait = self.retry_after(rule, *identifiers)
        if wait is not None:
            raise TooManyRequests(message, retry_after=wait)

    def hit(self, rule: Rule, *identifiers: str) -> None:
        ids = self._ids(rule, identifiers)
        with _storage_errors():
            for window in rule.windows:
                self.strategy.hit(window, *ids)

    def count(self, rule: Rule, *identifiers: str) -> int:
        """Attempts recorded in the rule's longest window."""
        window = max(rule.windows, key=lambda w: w.get_expiry())
        with _storage_errors():
            stats = self.strategy.get_window_stats(window, *self._ids(rule, identifiers))
        return window.amount - stats.remaining

    def clear(self, rule: Rule, *identifiers: str) -> None:
        ids = self._ids(rule, identifiers)
        with _storage_errors():
            for window in rule.windows:
                self.strategy.clear(window, *ids)

    def generation(self, name: str, *, bump: bool = False) -> int:
        """A counter that lets one action clear many keys at once (e.g. every address that
        guessed one SIRET's code): include it in the identifiers, bump it to start afresh.
        It lives two days, longer than any window, so its reset never revives old attempts."""
        key = f"{self.prefix}/generation/{name}"
        with _storage_errors():
            if bump:
                return self.storage.incr(key, 2 * 86400)
            return self.storage.get(key)

    def claim(self, name: str, seconds: int) -> bool:
        """Take the short-lived marker `name` (work in progress): True for the one caller that
        takes it while nobody holds it. It lapses by itself after `seconds`, so a holder that
        died never blocks the work for good; `release` drops it when the work is done."""
        with _storage_errors():
            return self.storage.incr(f"{self.prefix}/claim/{name}", seconds) == 1

    def release(self, name: str) -> None:
        with _storage_errors():
            self.storage.clear(f"{self.prefix}/claim/{name}")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The limits' store failing (Redis down) answers 503: never an unthrottled attempt."""
    try:
        yield
    except LimitsStorageError as exc:
        raise Unavailable("Le contrôle des tentatives est momentanément indisponible.") from exc


def init_app(app: Flask, *, redis_url: str | None, prefix: str) -> None:
    app.extensions[EXTENSION] = RateLimiter(redis_url or "memory://", prefix=prefix)


def limiter() -> RateLimiter:
    return current_app.extensions[EXTENSION]
