"""A local-folder object store: the embedded default.

Each object is a file written atomically (temporary file, fsync, rename, fsync of the folder) with a
JSON sidecar under `.meta/` holding its checksum, metadata and retain-until date; `put_many` writes
many objects with one round of parallel fsyncs. Retention is emulated: the backend
refuses to overwrite or delete an object before its retain-until date, but nothing stops someone
with access to the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from storage.base import (
    ChecksumMismatch,
    NewObject,
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


#: fsyncs issued together: the file system commits its journal once for many of them
_SYNC_THREADS = 8


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write files atomically and durably, all together.

    Each file goes to a temporary file in its folder; the temporary files are synced at once
    (parallel fsyncs share the journal's commits), then renamed in the given order (a file is
    never seen half-written), then each folder holding a new name, and the parent of each folder
    created, is synced: only then do the names survive a crash. Returning means the files are on
    disk for good; the caller commits the rows pointing to them after that.
    """
    created: list[Path] = []
    for folder in dict.fromkeys(path.parent for path, _ in files):
        created += _missing_folders(folder)
        folder.mkdir(parents=True, exist_ok=True)
    folders = list(dict.fromkeys([path.parent for path, _ in files] + [f.parent for f in created]))
    staged: list[tuple[str, Path]] = []
    fds: list[int] = []
    try:
        for path, data in files:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            fds.append(fd)
            staged.append((tmp, path))
            _write_fd(fd, data)
        with ThreadPoolExecutor(max_workers=min(_SYNC_THREADS, len(fds))) as pool:
            list(pool.map(os.fsync, fds))
            while fds:
                os.close(fds.pop())
            while staged:
                tmp, path = staged[0]
                os.replace(tmp, path)
                staged.pop(0)
            list(pool.map(_sync_folder, folders))
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for tmp, _ in staged:
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
        new = NewObject(key, data, content_type, dict(metadata or {}), sha256, retain_until)
        return self.put_many([new], overwrite=overwrite)[0]

    def put_many(self, objects: Sequence[NewObject], *, overwrite: bool = True) -> list[ObjectInfo]:
        """Every object checked first (key, checksum, overwrite, retention), then all written
        together: one parallel round of fsyncs for the files and their sidecars, each sidecar
        renamed before its object (an object appears with its checksum), each folder synced
        once. Durable on return."""
        checked = []
        for o in objects:
            path = self._path(o.key)
            actual = sha256_hex(o.data)
            if o.sha256 is not None and o.sha256 != actual:
                raise ChecksumMismatch(f"{o.key}: announced {o.sha256}, got {actual}")
            if path.exists():
                if not overwrite:
                    raise ObjectExists(o.key)
                self._check_retention(o.key)
            meta = {
                "sha256": actual,
                "size": len(o.data),
                "metadata": dict(o.metadata),
                "content_type": o.content_type,
                "retain_until": o.retain_until.isoformat() if o.retain_until else None,
            }
            checked.append((o, path, actual, json.dumps(meta).encode()))
        files = []
        for o, path, _, meta in checked:
            files += [(self._meta_path(o.key), meta), (path, o.data)]
        try:
            _write_all(files)
        except OSError as exc:
            keys = ", ".join(o.key for o in objects)
            raise StorageError(f"cannot write {keys}: {exc}") from exc
        now = datetime.now(UTC)
        return [
            ObjectInfo(
                key=o.key,
                size=len(o.data),
                sha256=actual,
                metadata=dict(o.metadata),
                retain_until=o.retain_until,
                last_modified=now,
            )
            for o, _, actual, _ in checked
        ]

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
