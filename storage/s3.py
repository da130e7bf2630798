"""An S3 object store on boto3, for AWS or any S3-compatible server.

Every put carries a SHA-256 checksum (Object Lock buckets require one); S3 errors become this
package's own (`NoSuchKey` -> `ObjectNotFound`, connection failures -> `StorageUnavailable`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from storage.base import (
    ChecksumMismatch,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    RetentionActive,
    StorageError,
    StorageUnavailable,
    check_key,
    sha256_hex,
)

_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}


def _translate(exc: Exception, key: str = "") -> StorageError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND:
            return ObjectNotFound(key)
        if code in {"AccessDenied"} and "retention" in str(exc).lower():
            return RetentionActive(key)
        if code in {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"}:
            return ChecksumMismatch(f"{key}: {code}")
        if status >= 500:
            return StorageUnavailable(f"{key}: {code}")
        return StorageError(f"{key}: {code} {exc}")
    if isinstance(exc, EndpointConnectionError | BotoCoreError):
        return StorageUnavailable(f"{key}: {exc}")
    return StorageError(f"{key}: {exc}")


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        connect_timeout: float = 3,
        read_timeout: float = 10,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": max(1, max_attempts), "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        self._lock_enabled: bool | None = None

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix})"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @property
    def enforces_retention(self) -> bool:  # type: ignore[override]
        if self._lock_enabled is None:
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._lock_enabled = enabled == "Enabled"
            except ClientError:
                self._lock_enabled = False
            except BotoCoreError as exc:
                raise _translate(exc) from exc
        return self._lock_enabled

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
        lock_mode: str = "GOVERNANCE",
    ) -> ObjectInfo:
        actual = sha256_hex(data)
        if sha256 is not None and sha256 != actual:
            raise ChecksumMismatch(f"{key}: announced {sha256}, got {actual}")
        if not overwrite and self.exists(key):
            raise ObjectExists(key)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": data,
            "ContentType": content_type,
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(actual)).decode(),
            "Metadata": {"sha256": actual, **(metadata or {})},
        }
        if retain_until is not None and self.enforces_retention:
            params["ObjectLockMode"] = lock_mode
            params["ObjectLockRetainUntilDate"] = retain_until
        try:
            self.client.put_object(**params)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        yield from body.iter_chunks(chunk_size)

    def head(self, key: str) -> ObjectInfo:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc
        metadata = dict(r.get("Metadata", {}))
        return ObjectInfo(
            key=key,
            size=r["ContentLength"],
            sha256=metadata.pop("sha256", None),
            metadata=metadata,
            retain_until=r.get("ObjectLockRetainUntilDate"),
            last_modified=r.get("LastModified"),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"][len(self.prefix) :],
                        size=item["Size"],
                        sha256=None,
                        last_modified=item.get("LastModified"),
                    )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, prefix) from exc

    def delete(self, key: str) -> None:
        info = self.head(key)
        if info.retain_until is not None and info.retain_until > datetime.now(
            info.retain_until.tzinfo
        ):
            raise RetentionActive(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc

    def presign(self, key: str, expires_in: int = 300) -> str | None:
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=min(expires_in, 300),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, key) from exc

    def ping(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc) from exc
