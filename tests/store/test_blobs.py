"""BlobStore on a local directory and on moto's S3 server; outages become StoreUnavailable."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from app.store.blobs import BlobNotFound, BlobStore, StoreUnavailable, open_store
from tests.helpers import make_bucket

CREDENTIALS = {"access_key_id": "test", "secret_access_key": "test"}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """An empty store on each backend."""
    if request.param == "local":
        return open_store(str(tmp_path / "blobs"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_store(f"s3://{make_bucket(endpoint)}/fleet", endpoint=endpoint, **CREDENTIALS)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_put_get_round_trip_binary(store: BlobStore) -> None:
    data = bytes(range(256)) * 4 + b"\x00\xff\r\n"
    store.put("models/m1.tflite", data)
    got = store.get("models/m1.tflite")
    assert isinstance(got, bytes) and got == data


def test_put_get_one_megabyte(store: BlobStore) -> None:
    data = os.urandom(1024 * 1024)
    store.put("users/u1/checkpoints/c1.ckpt", data)
    assert store.get("users/u1/checkpoints/c1.ckpt") == data


def test_empty_blob(store: BlobStore) -> None:
    store.put("empty", b"")
    assert store.exists("empty")
    assert store.get("empty") == b""


def test_put_overwrites(store: BlobStore) -> None:
    store.put("k", b"first")
    store.put("k", b"second, longer than the first")
    assert store.get("k") == b"second, longer than the first"


def test_exists(store: BlobStore) -> None:
    assert not store.exists("models/nope.tflite")
    store.put("models/yes.tflite", b"1")
    assert store.exists("models/yes.tflite")
    assert not store.exists("models")  # a "directory" is not a blob


def test_keys_by_prefix(store: BlobStore) -> None:
    for key in ("users/u1/checkpoints/a.ckpt", "users/u1/checkpoints/b.ckpt",
                "users/u10/checkpoints/c.ckpt", "models/m.tflite"):
        store.put(key, b"x")
    assert sorted(store.keys("users/u1")) == ["users/u1/checkpoints/a.ckpt",
                                              "users/u1/checkpoints/b.ckpt"]
    assert sorted(store.keys("users")) == ["users/u1/checkpoints/a.ckpt",
                                           "users/u1/checkpoints/b.ckpt",
                                           "users/u10/checkpoints/c.ckpt"]
    assert store.keys("models") == ["models/m.tflite"]
    assert store.keys("nothing/here") == []
    assert len(store.keys("")) == 4


def test_delete_is_idempotent(store: BlobStore) -> None:
    store.put("users/u1/checkpoints/a.ckpt", b"x")
    store.put("users/u1/checkpoints/b.ckpt", b"y")
    store.delete("users/u1/checkpoints/a.ckpt")
    assert not store.exists("users/u1/checkpoints/a.ckpt")
    store.delete("users/u1/checkpoints/a.ckpt")  # again: no error
    store.delete("never/existed")
    assert store.keys("users") == ["users/u1/checkpoints/b.ckpt"]  # the other one stays
    with pytest.raises(BlobNotFound):
        store.get("users/u1/checkpoints/a.ckpt")


def test_get_missing_key_is_blob_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as info:
        store.get("models/missing.tflite")
    assert "missing.tflite" in str(info.value)
    assert not isinstance(info.value, StoreUnavailable)


def test_ping(store: BlobStore) -> None:
    store.ping()
    store.put("a/b", b"1")
    store.ping()


def test_s3_prefix_isolates_stores(s3_endpoint: str) -> None:
    bucket = make_bucket(s3_endpoint)
    a = open_store(f"s3://{bucket}/a", endpoint=s3_endpoint, **CREDENTIALS)
    b = open_store(f"s3://{bucket}/b", endpoint=s3_endpoint, **CREDENTIALS)
    a.put("k", b"from a")
    assert a.keys("") == ["k"]  # keys are relative to the prefix
    assert b.keys("") == [] and not b.exists("k")
    whole = open_store(f"s3://{bucket}", endpoint=s3_endpoint, **CREDENTIALS)
    assert whole.get("a/k") == b"from a"


def test_local_store_creates_its_directory_and_accepts_file_urls(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    s = open_store(f"file://{root}")
    assert root.is_dir()
    s.put("users/u1/x.ckpt", b"1")
    assert (root / "users" / "u1" / "x.ckpt").read_bytes() == b"1"
    assert "local store" in s.description


# outages


@pytest.fixture
def unreachable() -> BlobStore:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    return open_store("s3://fleetlite-nowhere/fleet", endpoint=endpoint, **CREDENTIALS)


def test_closed_port_ping_is_store_unavailable(unreachable: BlobStore) -> None:
    with pytest.raises(StoreUnavailable) as info:
        unreachable.ping()
    assert "s3://fleetlite-nowhere/fleet" in str(info.value)  # says which store


def test_closed_port_get_is_store_unavailable_not_not_found(unreachable: BlobStore) -> None:
    with pytest.raises(StoreUnavailable):
        unreachable.get("models/m.tflite")


def test_closed_port_put_is_store_unavailable(unreachable: BlobStore) -> None:
    with pytest.raises(StoreUnavailable):
        unreachable.put("models/m.tflite", b"data")


def test_closed_port_exists_and_keys_are_store_unavailable(unreachable: BlobStore) -> None:
    # "does not exist" would be a lie while the store is down
    with pytest.raises(StoreUnavailable):
        unreachable.exists("models/m.tflite")
    with pytest.raises(StoreUnavailable):
        unreachable.keys("models")


@pytest.fixture
def no_bucket(s3_endpoint: str) -> BlobStore:
    return open_store(f"s3://fleetlite-missing-{uuid.uuid4().hex[:8]}/fleet",
                      endpoint=s3_endpoint, **CREDENTIALS)


def test_missing_bucket_ping_is_store_unavailable(no_bucket: BlobStore) -> None:
    with pytest.raises(StoreUnavailable):
        no_bucket.ping()


def test_missing_bucket_put_is_store_unavailable(no_bucket: BlobStore) -> None:
    with pytest.raises(StoreUnavailable):
        no_bucket.put("models/m.tflite", b"data")
