"""`schemathesis run --checks all`, as a user runs it from the repository (every phase and every
check, with schemathesis.toml), against a server running open and one with keys: no failure.

Each server holds a model, a trained session with a checkpoint, and (for the keyed one) a
user's key, so the stateful phase has something to find. Seeded and bounded per operation, so
CI runs about the same cases each time, in about half a minute a server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import models
from tests.helpers import LiveServer, new_session, running_server, upload

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 20  # per operation and phase
ADMIN = "fuzz-admin-token"
X = [[[0.5] * 28] * 28]
Y = [[1.0] + [0.0] * 9]


def schemathesis_run(url: str, *options: str) -> None:
    """The command line from the repository root, so schemathesis.toml applies."""
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(cli), "run", "--checks", "all", f"{url}/openapi.json", "--seed", "1",
         "--max-examples", str(MAX_EXAMPLES), "--request-timeout", "60", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert "Failures:" not in summary and " passed" in run.stdout, summary


def seeded(root: Path, **settings: object) -> Iterator[LiveServer]:
    """A server with a model and a session trained one step, with a checkpoint."""
    headers = {"Authorization": f"Bearer {ADMIN}"} if settings.get("admin_token") else {}
    with running_server("sqlite-local", root, None, max_jobs_per_user=2, **settings) as live:
        with httpx.Client(base_url=live.url, timeout=60, headers=headers) as c:
            sid = new_session(c, "alice", upload(c, models.build_cached("mlp"), "mlp"))
            assert c.post(f"/v1/sessions/{sid}/train",
                          json={"inputs": {"x": X, "y": Y}}).status_code == 200
            assert c.post(f"/v1/sessions/{sid}/checkpoints").status_code == 201
            if headers:
                assert c.post("/v1/users/alice/keys").status_code == 201
        yield live


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from seeded(tmp_path_factory.mktemp("st-open"))


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from seeded(tmp_path_factory.mktemp("st-keyed"), admin_token=ADMIN)


def test_schemathesis_run_checks_all_passes_on_an_open_server(open_server: LiveServer) -> None:
    schemathesis_run(open_server.url)


def test_schemathesis_run_checks_all_passes_on_a_server_with_keys(
        keyed_server: LiveServer) -> None:
    schemathesis_run(keyed_server.url, "--header", f"Authorization: Bearer {ADMIN}")
