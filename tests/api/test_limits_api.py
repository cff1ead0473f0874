"""Limits answer clearly: 413 for bodies, 422 for tensors, 429 with Retry-After per user."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.helpers import (
    LiveServer,
    assert_problem,
    new_session,
    running_server,
    upload,
)

LIMITS = {"max_tensor_elements": 3 * 28 * 28 + 3 * 10, "max_batch_size": 4,
          "max_live_sessions_per_user": 2, "max_jobs_per_user": 1,
          "max_request_bytes": 400_000, "max_dataset_bytes": 2_000_000}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("limited")
    with running_server("sqlite-local", root, None, **LIMITS) as server:
        yield server


@pytest.fixture(scope="module")
def c(limited: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def model_id(c: httpx.Client, mlp_bytes: bytes) -> str:
    return upload(c, mlp_bytes, "mlp")


def batch(n: int) -> dict[str, list]:  # type: ignore[type-arg]
    return {"x": np.zeros((n, 28, 28), np.float32).tolist(),
            "y": np.eye(10, dtype=np.float32)[[0] * n].tolist()}


def test_batch_over_the_limit_answers_422(c: httpx.Client, model_id: str) -> None:
    sid = new_session(c, "ann", model_id)
    assert c.post(f"/v1/sessions/{sid}/train", json={"inputs": batch(3)}).status_code == 200
    assert_problem(c.post(f"/v1/sessions/{sid}/train", json={"inputs": batch(4)}), 422,
                   "elements")
    assert_problem(c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": batch(5)["x"]}}),
                   422, "batch of 5")
    assert c.get(f"/v1/sessions/{sid}").json()["steps"] == 1


def test_body_over_the_limit_answers_413(c: httpx.Client, model_id: str) -> None:
    sid = new_session(c, "ben", model_id)
    huge = b'{"inputs": {"x": [' + b"0.0," * 120_000 + b"0.0]}}"
    assert_problem(c.post(f"/v1/sessions/{sid}/infer", content=huge,
                          headers={"content-type": "application/json"}), 413)


def test_dataset_over_the_limit_answers_413(c: httpx.Client) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((700, 28, 28), np.float32), y=np.zeros((700, 10), np.float32))
    r = c.post("/v1/users/ben/datasets", files={"file": ("d.npz", buf.getvalue())},
               data={"name": "big"})
    assert_problem(r, 413)


def test_live_sessions_per_user_take_turns(c: httpx.Client, model_id: str,
                                           limited: LiveServer) -> None:
    first = [new_session(c, "cat", model_id) for _ in range(2)]
    c.post(f"/v1/sessions/{first[0]}/train", json={"inputs": batch(2)})
    third = new_session(c, "cat", model_id)  # the least recently used one makes room
    deadline = time.monotonic() + 10
    while len(limited.ctx.pool.of_user("cat")) > 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert all(c.get(f"/v1/sessions/{s}").status_code == 200 for s in [*first, third])
    r = c.post(f"/v1/sessions/{first[0]}/infer", json={"inputs": {"x": batch(1)["x"]}})
    assert r.status_code == 200  # an evicted session comes back on its next call
    assert c.get(f"/v1/sessions/{first[0]}").json()["steps"] == 1


def test_jobs_per_user_over_the_limit_answer_429_with_retry_after(c: httpx.Client,
                                                                  model_id: str) -> None:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.random((400, 28, 28), dtype=np.float32),
             y=np.eye(10, dtype=np.float32)[rng.integers(0, 10, 400)])
    ds = c.post("/v1/users/dan/datasets", files={"file": ("d.npz", buf.getvalue())},
                data={"name": "d"}).json()["id"]
    a, b = new_session(c, "dan", model_id), new_session(c, "dan", model_id)
    job = c.post(f"/v1/sessions/{a}/jobs", json={"dataset_id": ds, "epochs": 200,
                                                 "batch_size": 4})
    assert job.status_code == 202, job.text
    r = c.post(f"/v1/sessions/{b}/jobs", json={"dataset_id": ds, "epochs": 1, "batch_size": 4})
    assert_problem(r, 429, "limit 1")
    assert int(r.headers["retry-after"]) > 0
    assert_problem(c.post(f"/v1/sessions/{b}/jobs", json={"dataset_id": ds, "epochs": 1,
                                                          "batch_size": 5}), 422, "limit")
    c.post(f"/v1/jobs/{job.json()['id']}/cancel")
