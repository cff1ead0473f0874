"""More sessions than the live cap: evicted sessions come back exactly as they left."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.helpers import (
    BACKENDS,
    LiveServer,
    new_session,
    running_server,
    upload,
)

CAP = 3
RNG = np.random.default_rng(5)
X = RNG.random((8, 28, 28), dtype=np.float32).tolist()


@pytest.fixture(scope="module", params=BACKENDS)
def capped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           s3_endpoint: str) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"capped-{request.param}")
    with running_server(request.param, root, s3_endpoint, max_live_sessions=CAP) as server:
        yield server


def train(c: httpx.Client, sid: str, label: int, n: int) -> None:
    y = np.zeros((8, 10), np.float32)
    y[:, label] = 1
    for _ in range(n):
        r = c.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": X, "y": y.tolist()}})
        assert r.status_code == 200, r.text


def infer(c: httpx.Client, sid: str) -> list:  # type: ignore[type-arg]
    r = c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X}})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["output"]  # type: ignore[no-any-return]


def wait_live_at_most(server: LiveServer, n: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while len(server.ctx.pool) > n:
        assert time.monotonic() < deadline, f"{len(server.fleet.pool)} live sessions"
        time.sleep(0.05)


def test_evicted_sessions_answer_exactly_as_before(capped: LiveServer, mlp_bytes: bytes) -> None:
    with httpx.Client(base_url=capped.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        sids = [new_session(c, f"user{i}", model_id) for i in range(CAP + 4)]
        expected = {}
        for i, sid in enumerate(sids):
            train(c, sid, label=i % 10, n=i + 1)
            expected[sid] = (infer(c, sid), i + 1)
        wait_live_at_most(capped, CAP)
        first = c.get(f"/v1/sessions/{sids[0]}").json()
        assert first["live"] is False and first["steps"] == 1
        kinds = {k["kind"] for k in c.get("/v1/users/user0/checkpoints").json()["items"]}
        assert kinds == {"auto"}
        for sid in sids:  # every one comes back, in a different order than it left
            out, steps = expected[sid]
            assert infer(c, sid) == out
            assert c.get(f"/v1/sessions/{sid}").json()["steps"] == steps
        wait_live_at_most(capped, CAP)


def test_training_continues_across_eviction(capped: LiveServer, mlp_bytes: bytes) -> None:
    with httpx.Client(base_url=capped.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        sid = new_session(c, "steady", model_id)
        twin = new_session(c, "twin", model_id)
        for _ in range(3):
            train(c, sid, label=3, n=2)
            train(c, twin, label=3, n=2)
            for i in range(CAP + 1):  # push both out of memory
                new_session(c, f"filler{i}", model_id)
            wait_live_at_most(capped, CAP)
        assert infer(c, sid) == infer(c, twin)
        assert c.get(f"/v1/sessions/{sid}").json()["steps"] == 6
