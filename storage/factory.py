"""Choose a backend from a store URL: `file://PATH` or `s3://BUCKET/PREFIX`."""

from __future__ import annotations

from urllib.parse import urlparse

from storage.base import ObjectStore, StorageError


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from storage.local import LocalStore

        return LocalStore(parsed.netloc + parsed.path)
    if parsed.scheme == "s3":
        from storage.s3 import S3Store

        if not parsed.netloc:
            raise StorageError(f"store URL without a bucket: {url}")
        return S3Store(parsed.netloc, parsed.path, endpoint_url=s3_endpoint_url)
    raise StorageError(f"unsupported store URL {url!r}: use file://PATH or s3://BUCKET/PREFIX")
