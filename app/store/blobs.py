"""A thin wrapper over obstore so the rest of the service sees put/get/delete/exists."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from app.errors import ServiceUnavailable

PROBE_PREFIX = "health/write-probe-"
# A local put writes "key#N" and renames it over "key"; listings hide such staging files.
_STAGING = re.compile(r"#\d+$")


class StoreUnavailable(ServiceUnavailable):
    """The blob store did not answer (network, credentials, missing bucket): a 503."""


class BlobNotFound(Exception):
    """No blob at that key."""


class BlobStore:
    """Blobs addressed by keys such as ``users/{user_id}/checkpoints/{id}.ckpt``."""

    def __init__(self, store: LocalStore | S3Store, description: str,
                 root: Path | None = None) -> None:
        self._store = store
        self.description = description
        self._root = root  # the directory of a local store

    def put(self, key: str, data: bytes) -> None:
        """Write a whole blob; both backends make it visible only when complete."""
        self._call(obstore.put, key, data)

    def get(self, key: str) -> bytes:
        """Read a whole blob."""
        result = self._call(obstore.get, key)
        return bytes(result.bytes())

    def delete(self, key: str) -> None:
        """Delete a blob; a missing one is not an error."""
        with contextlib.suppress(BlobNotFound):
            self._call(obstore.delete, key)

    def exists(self, key: str) -> bool:
        """Whether a blob is stored at key."""
        try:
            self._call(obstore.head, key)
        except BlobNotFound:
            return False
        return True

    def keys(self, prefix: str) -> list[str]:
        """Every key under prefix."""
        out: list[str] = []
        for batch in self._call(obstore.list, self._store, prefix, _raw=True):
            out.extend(meta["path"] for meta in batch)
        return out

    def remove_partial_writes(self) -> int:
        """Delete what puts cut short by a crash left behind; call only with no put in flight.

        A local put is a staging file renamed over the key, so a SIGKILL mid-write leaves
        ``key#N``: never visible as a blob, but it holds disk space. On S3 a put shows
        nothing until it completes (incomplete multipart uploads: a bucket lifecycle rule).
        """
        if self._root is None:
            return 0
        partial = [p for p in self._root.rglob("*#*") if _STAGING.search(p.name) and p.is_file()]
        for p in partial:
            p.unlink(missing_ok=True)
        return len(partial)

    def prune_empty(self, prefix: str) -> None:
        """Remove the local directory of prefix and its parents while they are empty (S3 has
        no directories): a deleted fleet leaves no empty folder behind."""
        if self._root is None:
            return
        path = (self._root / prefix).resolve()
        while path != self._root and self._root in path.parents:
            try:
                path.rmdir()
            except OSError:  # not empty, or already gone
                if path.exists():
                    return
            path = path.parent

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a listing."""
        self._call(obstore.list_with_delimiter, self._store, "", _raw=True)

    def check_writable(self) -> None:
        """Raise StoreUnavailable unless the store takes a write (a small probe blob, put
        and deleted): a read-only or full store answers a listing but refuses saves."""
        key = f"{PROBE_PREFIX}{os.getpid()}-{threading.get_ident()}"
        self.put(key, b"ok")
        self.delete(key)

    def _call(self, fn, *args, _raw: bool = False):  # type: ignore[no-untyped-def]
        try:
            if _raw:
                result = fn(*args)
                # obstore.list is lazy: force the first request inside the try.
                return list(result) if fn is obstore.list else result
            return fn(self._store, *args)
        except (NotFoundError, FileNotFoundError) as exc:
            if "NoSuchBucket" in str(exc):  # S3's 404 for the bucket itself: store trouble
                raise StoreUnavailable(f"{self.description}: the bucket does not exist") from exc
            raise BlobNotFound(str(args[0] if args else exc)) from exc
        except Exception as exc:  # obstore raises a family of errors for I/O trouble
            reason = str(exc).split("\n\nDebug source:")[0].strip()  # not the Rust dump
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {reason}") from exc


def open_store(
    url: str,
    *,
    endpoint: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> BlobStore:
    """Open the store named by url: a directory path, file:// or s3://bucket[/prefix]."""
    if url.startswith("s3://"):
        parsed = urlparse(url)
        config: dict[str, object] = {"region": region}
        if endpoint:
            config["endpoint"] = endpoint
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        options = {
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": "3s",
            "read_timeout": "5s",  # a store that accepts and then stalls: 503 in seconds
            "timeout": "30s",
        }
        store = S3Store(
            parsed.netloc,
            prefix=parsed.path.strip("/") or None,
            config=config,  # type: ignore[arg-type]
            client_options=options,  # type: ignore[arg-type]
            retry_config={  # bounded, so a store outage answers 503 quickly
                "max_retries": 2,
                "backoff": {"init_backoff": timedelta(milliseconds=100),
                            "max_backoff": timedelta(seconds=1), "base": 2.0},
                "retry_timeout": timedelta(seconds=5),
            },
        )
        return BlobStore(store, f"s3 store {url}")
    path = Path(url.removeprefix("file://")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return BlobStore(LocalStore(prefix=path), f"local store {path}", root=path)
