"""Choose a backend from a store URL: `file://PATH` or `s3://BUCKET/PREFIX`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from storage.base import ObjectStore, StorageError
from storage.local import LocalStore
from storage.s3 import S3Store


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect and to wait for each answer; attempts per call (retries included)."""

    connect: float = 3
    read: float = 10
    attempts: int = 3


def open_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    timeouts: Timeouts | None = None,
) -> ObjectStore:
    """A store for `url`; every network call of an S3 store is bounded by `timeouts`."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(parsed.netloc + parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"store URL without a bucket: {url}")
        t = timeouts or Timeouts()
        return S3Store(
            parsed.netloc,
            parsed.path,
            endpoint_url=s3_endpoint_url,
            connect_timeout=t.connect,
            read_timeout=t.read,
            max_attempts=t.attempts,
        )
    raise StorageError(f"unsupported store URL {url!r}: use file://PATH or s3://BUCKET/PREFIX")
