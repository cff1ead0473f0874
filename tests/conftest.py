"""Shared fixtures: real models from models/, real servers over real HTTP, both backends.

Backends: "sqlite-local" (the embedded defaults) always; "postgres-s3" (PostgreSQL on
127.0.0.1:5432 and moto's S3 server in-process) when PostgreSQL answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

import models
from tests.helpers import BACKENDS, LiveServer, running_server, upload


@pytest.fixture(scope="session")
def mlp_bytes() -> bytes:
    """The blog's MLP, built by models/."""
    return models.build_cached("mlp")


@pytest.fixture(scope="session")
def head_bytes() -> bytes:
    """A softmax head with other input names and an int32 label."""
    return models.build_cached("head")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, in-process, for the whole run."""
    from moto.server import ThreadedMotoServer

    # One access-log line per S3 request drowned failure reports (96 % of one run's output).
    for name in ("werkzeug", "moto"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           s3_endpoint: str) -> Iterator[LiveServer]:
    """A running service per test module and backend, with the module's SERVER_SETTINGS (a
    dict of Settings fields) over the defaults."""
    root = tmp_path_factory.mktemp(request.param)
    overrides = getattr(request.module, "SERVER_SETTINGS", {})
    with running_server(request.param, root, s3_endpoint, **overrides) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client with keep-alive to the module's server."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def mlp_id(client: httpx.Client, mlp_bytes: bytes) -> str:
    """The MLP uploaded to the module's server."""
    return upload(client, mlp_bytes, "mlp")
