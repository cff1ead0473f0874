"""`schemathesis run --checks all`, as a user runs it from the repository (every phase and every
check, with schemathesis.toml), against a server running open and one with keys, on both
backends: no failure.

Each server holds a model, a dataset that fits it, a trained session with a checkpoint, and
(for the keyed one) a user's key; their ids reach schemathesis.toml's hooks (tests/fuzz/hooks.py)
through FUZZ_SEEDS, so generated requests reach real objects: sessions, jobs and fleets are
created from them, not only 404s. Seeded and bounded per operation, so CI runs about the same
cases each time.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

import models
from tests.helpers import BACKENDS, LiveServer, new_session, running_server, upload

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 20  # per operation and phase
ADMIN = "fuzz-admin-token"
X = [[[0.5] * 28] * 28]
Y = [[1.0] + [0.0] * 9]


def schemathesis_run(live: LiveServer, *options: str) -> None:
    """The command line from the repository root, so schemathesis.toml applies."""
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(cli), "run", "--checks", "all", f"{live.url}/openapi.json", "--seed", "1",
         "--max-examples", str(MAX_EXAMPLES), "--request-timeout", "60", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "NO_COLOR": "1", "FUZZ_SEEDS": orjson.dumps(live.seeds).decode()})  # type: ignore[attr-defined]
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert "Failures:" not in summary and " passed" in run.stdout, summary
    # The hooks took generated requests to the seeded objects: sessions made on the seeded
    # model and jobs on the seeded dataset, beside the ones seeded.
    seeds = live.seeds  # type: ignore[attr-defined]
    headers = dict(h.split(": ", 1) for h in options[1::2]) if options[:1] == ("--header",) else {}
    with httpx.Client(base_url=live.url, timeout=60, headers=headers) as c:
        sessions = c.get("/v1/users/alice/sessions", params={"limit": 500}).json()["items"]
        jobs = c.get("/v1/users/alice/jobs", params={"limit": 500}).json()["items"]
    assert sum(s["model_id"] == seeds["model_id"] for s in sessions) > 1, sessions
    assert any(j["dataset_id"] == seeds["dataset_id"] for j in jobs), jobs


def _dataset() -> bytes:
    """Examples that fit the MLP's train signature: jobs and fleets on it can run."""
    rng = np.random.default_rng(4)
    buf = io.BytesIO()
    np.savez(buf, x=rng.random((64, 28, 28), dtype=np.float32),
             y=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)])
    return buf.getvalue()


def seeded(backend: str, root: Path, s3_endpoint: str, **settings: object
           ) -> Iterator[LiveServer]:
    """A server with a model, a dataset, and a session trained one step with a checkpoint;
    `live.seeds` names them for the hooks."""
    headers = {"Authorization": f"Bearer {ADMIN}"} if settings.get("admin_token") else {}
    with running_server(backend, root, s3_endpoint, max_jobs_per_user=2, **settings) as live:
        with httpx.Client(base_url=live.url, timeout=60, headers=headers) as c:
            model_id = upload(c, models.build_cached("mlp"), "mlp")
            sid = new_session(c, "alice", model_id)
            assert c.post(f"/v1/sessions/{sid}/train",
                          json={"inputs": {"x": X, "y": Y}}).status_code == 200
            r = c.post(f"/v1/sessions/{sid}/checkpoints")
            assert r.status_code == 201, r.text
            checkpoint_id = r.json()["id"]
            r = c.post("/v1/users/alice/datasets", files={"file": ("d.npz", _dataset())},
                       data={"name": "fuzz", "model_id": model_id})
            assert r.status_code == 201, r.text
            if headers:
                assert c.post("/v1/users/alice/keys").status_code == 201
        live.seeds = {"user_id": "alice", "model_id": model_id, "session_id": sid,  # type: ignore[attr-defined]
                      "checkpoint_id": checkpoint_id, "dataset_id": r.json()["id"]}
        yield live


@pytest.fixture(scope="module", params=BACKENDS)
def open_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                s3_endpoint: str) -> Iterator[LiveServer]:
    yield from seeded(request.param, tmp_path_factory.mktemp("st-open"), s3_endpoint)


@pytest.fixture(scope="module", params=["postgres-s3"])  # the open one runs on both
def keyed_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 s3_endpoint: str) -> Iterator[LiveServer]:
    yield from seeded(request.param, tmp_path_factory.mktemp("st-keyed"), s3_endpoint,
                      admin_token=ADMIN)


def test_schemathesis_run_checks_all_passes_on_an_open_server(open_server: LiveServer) -> None:
    schemathesis_run(open_server)


def test_schemathesis_run_checks_all_passes_on_a_server_with_keys(
        keyed_server: LiveServer) -> None:
    schemathesis_run(keyed_server, "--header", f"Authorization: Bearer {ADMIN}")
