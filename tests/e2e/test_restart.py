"""A session outlives the process: SIGTERM saves it, SIGKILL loses at most the autosave bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.helpers import BACKENDS, backend_settings, new_session, upload

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(2)
X = RNG.random((8, 28, 28), dtype=np.float32).tolist()
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)].tolist()


def env_for(settings: Settings) -> dict[str, str]:
    """The FLEETLITE_* environment that reproduces these settings in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLITE_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[f"FLEETLITE_{name.upper()}"] = str(value)
    return env


class ServerProcess:
    """`uvicorn --factory app.main:create_app` as a child process."""

    started: list[ServerProcess] = []  # every one, so a failed test leaves none behind

    def __init__(self, env: dict[str, str], log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        ServerProcess.started.append(self)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"server exited; see {log}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)

    def kill_if_running(self) -> None:
        """For a test that failed before it stopped the server: never leave one behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()

    def stop(self, sig: int) -> bool:
        """Send a signal, wait for the exit; whether the shutdown was graceful."""
        self.proc.send_signal(sig)
        code = self.proc.wait(90)
        self.log.close()
        # uvicorn re-raises SIGTERM after a graceful shutdown, so -15 is a clean exit too.
        return code in (0, -signal.SIGTERM) and b"Application shutdown complete" in (
            Path(self.log.name).read_bytes())


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
             ) -> Iterator[Settings]:
    with backend_settings(request.param, tmp_path, s3_endpoint, autosave_seconds=1.0,
                          flush_seconds=0.5) as s:
        yield s


def snapshot(client: httpx.Client, sid: str) -> tuple[int, list]:  # type: ignore[type-arg]
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X}})
    assert r.status_code == 200, r.text
    return client.get(f"/v1/sessions/{sid}").json()["steps"], r.json()["outputs"]


def train(client: httpx.Client, sid: str, n: int) -> None:
    for _ in range(n):
        assert client.post(f"/v1/sessions/{sid}/train",
                           json={"inputs": {"x": X, "y": Y}}).status_code == 200


@pytest.mark.slow
def test_sigterm_restart_keeps_every_step(settings: Settings, mlp_bytes: bytes,
                                          tmp_path: Path) -> None:
    env = env_for(settings.model_copy(update={"autosave_seconds": 3600.0}))
    first = ServerProcess(env, tmp_path / "server.log")
    with httpx.Client(base_url=first.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        alice, bob = new_session(c, "alice", model_id), new_session(c, "bob", model_id)
        train(c, alice, 7)
        train(c, bob, 3)
        before = {sid: snapshot(c, sid) for sid in (alice, bob)}
    assert before[alice][0] == 7 and before[bob][0] == 3
    assert first.stop(signal.SIGTERM)

    second = ServerProcess(env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            for sid, user in ((alice, "alice"), (bob, "bob")):
                assert snapshot(c, sid) == before[sid]  # same steps, bit-equal outputs
                kinds = [k["kind"] for k in c.get(f"/v1/users/{user}/checkpoints").json()["items"]]
                assert kinds == ["auto"]  # nobody saved by hand
            train(c, alice, 1)
            assert c.get(f"/v1/sessions/{alice}").json()["steps"] == 8
    finally:
        second.stop(signal.SIGTERM)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_autosave_interval(settings: Settings, mlp_bytes: bytes,
                                                     tmp_path: Path) -> None:
    env = env_for(settings)
    first = ServerProcess(env, tmp_path / "server.log")
    with httpx.Client(base_url=first.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        sid = new_session(c, "alice", model_id)
        train(c, sid, 5)
        before = snapshot(c, sid)
        deadline = time.monotonic() + 30
        while not c.get("/v1/users/alice/checkpoints").json()["items"]:
            assert time.monotonic() < deadline, "no autosave within the interval"
            time.sleep(0.2)
    first.stop(signal.SIGKILL)

    second = ServerProcess(env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            assert snapshot(c, sid) == before
    finally:
        second.stop(signal.SIGTERM)
