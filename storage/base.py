"""The object-store interface and its errors."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime


class StorageError(Exception):
    """Base of every error this package raises."""


class StorageUnavailable(StorageError):
    """The store cannot be reached or answered with a server error."""


class ObjectNotFound(StorageError, FileNotFoundError):
    pass


class ObjectExists(StorageError):
    """Put refused: the key exists and overwriting was not allowed."""


class RetentionActive(StorageError):
    """The object is under retention and cannot be overwritten or deleted yet."""


class ChecksumMismatch(StorageError):
    """The bytes do not match the SHA-256 the caller announced."""


_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key.split("/") or "//" in key or len(key) > 900:
        raise StorageError(f"invalid object key: {key!r}")
    return key


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    retain_until: datetime | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True)
class NewObject:
    """One object of a `put_many`: what `put` takes for one key."""

    key: str
    data: bytes
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    retain_until: datetime | None = None


class ObjectStore(ABC):
    """Keys are `/`-separated paths; every put carries the SHA-256 of its bytes."""

    #: True when retention is really enforced by the server (Object Lock), not emulated.
    enforces_retention: bool = False

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes,
        *,
        sha256: str | None = None,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        overwrite: bool = True,
    ) -> ObjectInfo: ...

    def put_many(self, objects: Sequence[NewObject], *, overwrite: bool = True) -> list[ObjectInfo]:
        """Several objects at once (a kit's files), in order; each is whole or absent, as with
        `put`. A backend may make them durable together (the local store syncs them in one
        round); when it raises, the objects written before the failure may remain."""
        return [
            self.put(
                o.key,
                o.data,
                sha256=o.sha256,
                metadata=o.metadata,
                content_type=o.content_type,
                retain_until=o.retain_until,
                overwrite=overwrite,
            )
            for o in objects
        ]

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        data = self.get(key)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    @abstractmethod
    def head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def presign(self, key: str, expires_in: int = 300) -> str | None:
        """A short-lived URL to the object, or None when the backend cannot make one."""
        return None

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def ping(self) -> None:
        """Raise StorageUnavailable when the store cannot be reached."""
        self.list("__ping__/")
