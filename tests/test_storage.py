"""One storage suite, two backends: a local folder and S3 on moto's server over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import (
    ChecksumMismatch,
    NewObject,
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


def test_put_many_writes_every_object_with_its_checksum(store: ObjectStore) -> None:
    objects = [
        NewObject("81/k/a.pdf", b"%PDF a", "application/pdf", {"kind": "a"}),
        NewObject("81/k/b.docx", b"PK b", metadata={"kind": "b"}),
        NewObject("81/k/sub/kit.zip", b"PK zip", "application/zip"),
    ]
    infos = store.put_many(objects)
    assert [i.key for i in infos] == [o.key for o in objects]
    for o, info in zip(objects, infos, strict=True):
        assert info.sha256 == sha256_hex(o.data) and info.size == len(o.data)
        assert store.get(o.key) == o.data
        assert store.head(o.key).sha256 == sha256_hex(o.data)
        assert store.head(o.key).metadata == o.metadata
    assert sorted(o.key for o in store.list("81/k/")) == sorted(o.key for o in objects)


def test_put_many_checks_every_object_before_writing_any(store: ObjectStore) -> None:
    store.put("81/k/kept.pdf", b"1")
    with pytest.raises(ChecksumMismatch):
        store.put_many(
            [NewObject("81/k/first.pdf", b"x"), NewObject("81/k/c.pdf", b"y", sha256="0" * 64)]
        )
    with pytest.raises(ObjectExists):
        store.put_many(
            [NewObject("81/k/second.pdf", b"x"), NewObject("81/k/kept.pdf", b"2")], overwrite=False
        )
    if isinstance(store, LocalStore):  # S3 puts one by one: the first may be written
        assert [o.key for o in store.list("81/")] == ["81/k/kept.pdf"]
    assert store.get("81/k/kept.pdf") == b"1"


def test_local_put_many_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_many([NewObject(f"kits/81/{n}/doc.pdf", b"%PDF" * n) for n in range(1, 6)])
    names = [p.name for p in (tmp_path / "store").rglob("*")]
    assert not [n for n in names if n.startswith(".tmp-")]
    assert len([n for n in names if n == "doc.pdf"]) == 5
    assert len([n for n in names if n == "doc.pdf.json"]) == 5


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
