"""The signing package's error hierarchy."""

from __future__ import annotations


class SigningError(Exception):
    """Base of every error this package raises."""


class Refused(SigningError):
    """A returned document is refused: `code` is machine-readable, `message` French."""

    def __init__(self, code: str, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []


class KeyUnavailable(SigningError):
    """The countersigning key cannot be loaded."""


class TimestampUnavailable(SigningError):
    """The time-stamping authority did not answer: never downgraded silently to B-B."""


class CountersignFailed(SigningError):
    """pyHanko could not sign the document."""


class VerificationBusy(SigningError):
    """The machine is too busy: verification ran out of wall-clock time, not of CPU budget.

    Says nothing about the file: the caller answers "try again" and keeps no verdict."""

    retry_after = 30
