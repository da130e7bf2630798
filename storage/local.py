"""A local-folder object store: the embedded default.

Each object is a file written atomically (temporary file, fsync, rename) with a JSON sidecar under
`.meta/` holding its checksum, metadata and retain-until date. Retention is emulated: the backend
refuses to overwrite or delete an object before its retain-until date, but nothing stops someone
with access to the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from storage.base import (
    ChecksumMismatch,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    RetentionActive,
    StorageError,
    check_key,
    sha256_hex,
)

_META = ".meta"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LocalStore(ObjectStore):
    enforces_retention = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create store folder {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META / (check_key(key) + ".json")

    def _read_meta(self, key: str) -> dict:
        try:
            return json.loads(self._meta_path(key).read_text())
        except FileNotFoundError:
            return {}

    def _check_retention(self, key: str) -> None:
        meta = self._read_meta(key)
        until = meta.get("retain_until")
        if until and datetime.fromisoformat(until) > datetime.now(UTC):
            raise RetentionActive(f"{key} is retained until {until}")

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
    ) -> ObjectInfo:
        path = self._path(key)
        actual = sha256_hex(data)
        if sha256 is not None and sha256 != actual:
            raise ChecksumMismatch(f"{key}: announced {sha256}, got {actual}")
        if path.exists():
            if not overwrite:
                raise ObjectExists(key)
            self._check_retention(key)
        meta = {
            "sha256": actual,
            "size": len(data),
            "metadata": dict(metadata or {}),
            "content_type": content_type,
            "retain_until": retain_until.isoformat() if retain_until else None,
        }
        try:
            _atomic_write(path, data)
            _atomic_write(self._meta_path(key), json.dumps(meta).encode())
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        return self.head(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        if not path.is_file():
            raise ObjectNotFound(key)
        meta = self._read_meta(key)
        until = meta.get("retain_until")
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            sha256=meta.get("sha256"),
            metadata=meta.get("metadata", {}),
            retain_until=datetime.fromisoformat(until) if until else None,
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if rel.startswith((_META + "/", ".tmp-")) or "/.tmp-" in rel or not path.is_file():
                continue
            if rel.startswith(prefix):
                yield self.head(rel)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not path.exists():
            raise ObjectNotFound(key)
        self._check_retention(key)
        path.unlink()
        self._meta_path(key).unlink(missing_ok=True)

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"store folder {self.root} is not writable")
