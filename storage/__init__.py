"""Object storage for issued documents, returns and the CDG archive.

A plain library (no Flask): one `ObjectStore` interface, a local-folder backend (the embedded
default) and an S3 backend for any S3-compatible server, chosen by URL with `open_store`.
"""

from storage.base import (
    ChecksumMismatch,
    NewObject,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    RetentionActive,
    StorageError,
    StorageUnavailable,
    sha256_hex,
)
from storage.factory import Timeouts, open_store

__all__ = [
    "ChecksumMismatch",
    "NewObject",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "RetentionActive",
    "StorageError",
    "StorageUnavailable",
    "Timeouts",
    "open_store",
    "sha256_hex",
]
