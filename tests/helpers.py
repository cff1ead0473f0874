"""Helpers shared by the tests: servers on both backends, uploads, problem assertions."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from app.config import Settings
from app.db.migrate import upgrade
from app.main import create_app

PG_ADMIN_URL = os.environ.get(
    "FLEETLITE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite-local", "postgres-s3")


def pg_available() -> bool:
    """Whether PostgreSQL answers at PG_ADMIN_URL."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"fleetlite_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_bucket(endpoint: str) -> str:
    """A new empty bucket on the S3 server."""
    import boto3

    name = f"fleetlite-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=name)
    return name


@contextmanager
def backend_settings(backend: str, root: Path, s3_endpoint: str | None, **overrides: object
                     ) -> Iterator[Settings]:
    """Settings for one backend with a fresh, migrated database and an empty store."""
    common: dict[str, object] = {"work_dir": str(root / "tmp"), "max_model_bytes": 4 * 1024**2,
                                 "autosave_seconds": 3600, **overrides}
    if backend == "sqlite-local":
        url = f"sqlite:///{root / 'fleetlite.db'}"
        upgrade(url)
        yield Settings(database_url=url, store_url=str(root / "store"), **common)  # type: ignore[arg-type]
        return
    if not pg_available():  # a failure, never a skip: half the matrix would go untested
        pytest.fail(f"PostgreSQL does not answer at {PG_ADMIN_URL}; start it (.ci/run does)")
    assert s3_endpoint is not None
    with pg_database() as url:
        upgrade(url)
        yield Settings(database_url=url, store_url=f"s3://{make_bucket(s3_endpoint)}/fleet",  # type: ignore[arg-type]
                       s3_endpoint=s3_endpoint, s3_access_key_id="test",
                       s3_secret_access_key="test", **common)


@contextmanager
def running_server(backend: str, root: Path, s3_endpoint: str | None,
                   **overrides: object) -> Iterator[LiveServer]:
    """A started server on a fresh backend, stopped gracefully afterwards."""
    with backend_settings(backend, root, s3_endpoint, **overrides) as settings:
        server = LiveServer(settings).start()
        try:
            yield server
        finally:
            server.stop()


class LiveServer:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> LiveServer:
        """Serve, and wait until the lifespan has finished starting."""
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server failed to start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Graceful stop: the lifespan's shutdown (autosave, flush) runs."""
        self.server.should_exit = True
        self.thread.join(60)

    @property
    def ctx(self):  # type: ignore[no-untyped-def]
        """The server's Fleet, for assertions about its internals."""
        return self.app.state.ctx


def upload(client: httpx.Client, data: bytes, name: str) -> str:
    """Upload a model, asserting 201 (or 200: the same bytes under that name were already
    there); returns its id."""
    r = client.post("/v1/models", files={"file": (f"{name}.tflite", data)}, data={"name": name})
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def new_session(client: httpx.Client, user: str, model_id: str, **extra: str) -> str:
    """Create a session, asserting 201; returns its id."""
    r = client.post(f"/v1/users/{user}/sessions", json={"model_id": model_id, **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def assert_problem(r: httpx.Response, status: int, *needles: str) -> dict:  # type: ignore[type-arg]
    """Assert an RFC 9457 problem with the status and the words that name what is wrong."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["error"] == body["detail"] and body["title"]
    for needle in needles:
        assert needle in body["detail"], (needle, body["detail"])
    assert "Traceback" not in r.text
    return body  # type: ignore[no-any-return]



def until(check: Callable[[], Any], what: Any, timeout: float = 120) -> Any:
    """`check()`'s first truthy answer, asked every 20 ms; fails with `what` (called, when it
    is callable) once `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.02)
    return got
