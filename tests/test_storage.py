"""One storage suite, two backends: a local folder and S3 on moto's server over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import (
    ChecksumMismatch,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    RetentionActive,
    StorageError,
    StorageUnavailable,
    open_store,
    sha256_hex,
)
from storage.local import LocalStore
from tests.conftest import make_bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(f"file://{tmp_path / 'store'}")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"archive-{abs(hash(tmp_path)) % 10**8}"
    make_bucket(endpoint, bucket, lock=True)
    return open_store(f"s3://{bucket}/cdg", s3_endpoint_url=endpoint)


def test_put_get_head_list(store: ObjectStore) -> None:
    data = b"%PDF-1.7 contenu"
    info = store.put(
        "81/conv/kit/special-conditions.pdf",
        data,
        sha256=sha256_hex(data),
        metadata={"siret": "21810004800014"},
        content_type="application/pdf",
    )
    assert info.size == len(data) and info.sha256 == sha256_hex(data)
    assert store.get("81/conv/kit/special-conditions.pdf") == data
    assert b"".join(store.iter_chunks("81/conv/kit/special-conditions.pdf", 4)) == data
    head = store.head("81/conv/kit/special-conditions.pdf")
    assert head.metadata["siret"] == "21810004800014"
    store.put("81/other.pdf", b"x")
    assert [o.key for o in store.list("81/conv/")] == ["81/conv/kit/special-conditions.pdf"]
    assert sorted(o.key for o in store.list("81/")) == [
        "81/conv/kit/special-conditions.pdf",
        "81/other.pdf",
    ]


def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("absent.pdf")
    with pytest.raises(ObjectNotFound):
        store.head("absent.pdf")
    assert not store.exists("absent.pdf")


def test_wrong_checksum_is_refused_before_writing(store: ObjectStore) -> None:
    with pytest.raises(ChecksumMismatch):
        store.put("a.pdf", b"abc", sha256="0" * 64)
    assert not store.exists("a.pdf")


def test_overwrite_can_be_refused(store: ObjectStore) -> None:
    store.put("a.pdf", b"1")
    with pytest.raises(ObjectExists):
        store.put("a.pdf", b"2", overwrite=False)
    assert store.get("a.pdf") == b"1"


def test_retention_blocks_delete_until_its_date(store: ObjectStore) -> None:
    until = datetime.now(UTC) + timedelta(days=365)
    store.put("kept.pdf", b"archive", retain_until=until)
    assert store.enforces_retention == (not isinstance(store, LocalStore))
    with pytest.raises(RetentionActive):
        store.delete("kept.pdf")
    assert store.get("kept.pdf") == b"archive"
    store.put("free.pdf", b"x")
    store.delete("free.pdf")
    assert not store.exists("free.pdf")


def test_bad_keys_are_refused(store: ObjectStore) -> None:
    for key in ("../etc/passwd", "/abs", "a//b", ""):
        with pytest.raises(StorageError):
            store.put(key, b"x")


def test_presign_gives_a_short_lived_url_on_s3(store: ObjectStore) -> None:
    store.put("p.pdf", b"x")
    url = store.presign("p.pdf", expires_in=3600)
    if url is None:
        return  # the local backend streams instead
    assert "X-Amz-Expires=300" in url  # capped at five minutes


def test_unreachable_s3_is_unavailable() -> None:
    store = open_store("s3://nowhere/x", s3_endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageUnavailable):
        store.put("a.pdf", b"x")
    with pytest.raises(StorageUnavailable):
        store.ping()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(StorageError):
        open_store("ftp://host/x")
