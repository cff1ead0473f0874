"""10,000 sessions with 200 live: every one trains and answers, memory stays bounded."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

import models
from tests.e2e.test_restart import ServerProcess, env_for
from tests.helpers import backend_settings, upload

SESSIONS = int(os.environ.get("FLEETLITE_TEST_FLEET", "10000"))
CAP = 200


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def features(i: int) -> list[list[float]]:
    return np.random.default_rng(i).random((4, 64), dtype=np.float32).tolist()


@pytest.mark.slow
def test_ten_thousand_sessions_with_two_hundred_live(tmp_path: Path, s3_endpoint: str) -> None:
    with backend_settings("sqlite-local", tmp_path, None, max_live_sessions=CAP,
                          autosave_seconds=3600.0, keep_autosaves=1) as settings:
        server = ServerProcess(env_for(settings), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120,
                          limits=httpx.Limits(max_connections=8)) as c:
            model_id = upload(c, models.build_cached("head"), "head")

            def create_and_train(i: int) -> tuple[str, list]:  # type: ignore[type-arg]
                r = c.post(f"/v1/users/u{i % 97}/sessions", json={"model_id": model_id})
                assert r.status_code == 201, r.text
                sid = r.json()["id"]
                x = features(i)
                r = c.post(f"/v1/sessions/{sid}/train",
                           json={"inputs": {"bottleneck": x, "label": [i % 4] * 4}})
                assert r.status_code == 200 and r.json()["step"] == 1, r.text
                r = c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"bottleneck": x}})
                assert r.status_code == 200, r.text
                return sid, r.json()["outputs"]["probabilities"]

            with ThreadPoolExecutor(4) as pool:
                first = list(pool.map(create_and_train, range(CAP)))
                at_cap = rss_mb(server.proc.pid)
                rest = list(pool.map(create_and_train, range(CAP, SESSIONS)))
                made = first + rest
                assert len({sid for sid, _ in made}) == SESSIONS

                def answers_as_before(item: tuple[int, tuple[str, list]]) -> None:  # type: ignore[type-arg]
                    i, (sid, expected) = item
                    r = c.post(f"/v1/sessions/{sid}/infer",
                               json={"inputs": {"bottleneck": features(i)}})
                    assert r.status_code == 200, r.text
                    assert r.json()["outputs"]["probabilities"] == expected, sid

                list(pool.map(answers_as_before, enumerate(made)))
            final = rss_mb(server.proc.pid)
            metrics = c.get("/metrics").text
        live = float(next(line.split()[-1] for line in metrics.splitlines()
                          if line.startswith("fleetlite_live_sessions ")))
        assert live <= CAP + 8  # evictions run in the background, a few may be in flight
        # Bounded by the cap, not by 10,000 interpreters (several GB).
        assert final < at_cap + 300, (at_cap, final)
    finally:
        server.stop(signal.SIGTERM)
