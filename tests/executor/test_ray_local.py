"""The Ray executor on a real local Ray: the same bits as the local executor, for fleets
and for jobs, and a worker killed in the middle of a round costs a retry, not a result."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.api.test_jobs_api import learnable, new_dataset, start_job, wait_job
from tests.fleets.support import digits, finish, start, upload_dataset
from tests.helpers import LiveServer, new_session, running_server, upload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def both(ray_local: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, LiveServer]]:
    root = tmp_path_factory.mktemp("ray")
    with running_server("sqlite-local", root / "local", None) as local, \
            running_server("sqlite-local", root / "ray", None, executor="ray") as on_ray:
        yield {"local": local, "ray": on_ray}


def _fleet(server: LiveServer, mlp: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=server.url, timeout=300) as c:
        model_id = upload(c, mlp, "mlp")
        dataset_id = upload_dataset(c, "ray", digits(600))
        fleet = finish(c, start(c, "ray", model_id=model_id, dataset_id=dataset_id, **spec)["id"])
        sha = [c.get(f"/v1/checkpoints/{k}").json()["sha256"]
               for k in fleet["global_checkpoint_ids"]]
        clients = c.get(f"/v1/fleets/{fleet['id']}/clients").json()["items"]
        personal = [c.get(f"/v1/checkpoints/{k['checkpoint_id']}").json()["sha256"]
                    for k in clients if k["checkpoint_id"]]
        return {"global": sha, "personal": personal, "id": fleet["id"]}


SPECS = {
    "fedavg": {"clients": 12, "clients_per_round": 6, "rounds": 3, "batch_size": 16,
               "partition": {"kind": "shards", "classes_per_client": 2}, "seed": 3},
    "fedper": {"clients": 10, "clients_per_round": 5, "rounds": 3, "batch_size": 16,
               "holdout": 0.2, "personal": ["dense_2/"], "finetune_epochs": 1,
               "strategy": {"name": "fedadam"}, "seed": 8},
}


@pytest.mark.parametrize("name", list(SPECS))
def test_fleet_on_ray_is_bit_identical_to_local(both: dict[str, LiveServer], mlp_bytes: bytes,
                                                name: str) -> None:
    local = _fleet(both["local"], mlp_bytes, SPECS[name])
    on_ray = _fleet(both["ray"], mlp_bytes, SPECS[name])
    assert on_ray["global"] == local["global"]
    assert on_ray["personal"] == local["personal"]


def test_job_on_ray_ends_with_identical_weights(both: dict[str, LiveServer],
                                                mlp_bytes: bytes) -> None:
    data = learnable(256, seed=5)
    probe = np.random.default_rng(1).random((4, 28, 28), dtype=np.float32).tolist()
    out = {}
    for where, server in both.items():
        with httpx.Client(base_url=server.url, timeout=300) as c:
            model_id = upload(c, mlp_bytes, "mlp")
            sid = new_session(c, "jr", model_id)
            job = start_job(c, sid, new_dataset(c, "jr", data), epochs=3, batch_size=16,
                            seed=7)
            done = wait_job(c, job["id"])
            assert done["status"] == "succeeded" and len(done["checkpoint_ids"]) == 3
            shas = [c.get(f"/v1/checkpoints/{k}").json()["sha256"]
                    for k in done["checkpoint_ids"]]
            infer = c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": probe}}).json()
            out[where] = (shas, done["metrics"]["epoch_loss"], infer["outputs"]["output"],
                          c.get(f"/v1/sessions/{sid}").json()["steps"])
    assert out["ray"] == out["local"]


def test_a_worker_killed_mid_round_costs_a_retry_not_a_result(
        both: dict[str, LiveServer], mlp_bytes: bytes, ray_local: Any) -> None:
    spec = {"clients": 40, "clients_per_round": 40, "rounds": 4, "batch_size": 8, "seed": 2}
    reference = _fleet(both["local"], mlp_bytes, spec)
    executor = both["ray"].ctx.executor
    pids = ray_local.get([a.pid.remote() for a in executor.actors])
    killed = threading.Event()

    def kill_when_busy() -> None:
        ctx = both["ray"].ctx
        while not killed.is_set():
            states = [ctx.fleets.state(f) for f in list(ctx.fleets._states)]
            if any(s and s.round >= 2 and s.updates_done >= 5 for s in states):
                os.kill(pids[0], signal.SIGKILL)  # the worker process, mid-round
                killed.set()
                return
            killed.wait(0.01)

    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    on_ray = _fleet(both["ray"], mlp_bytes, spec)
    killed.set()
    watcher.join(10)
    assert on_ray["global"] == reference["global"]
    assert pids[0] not in ray_local.get([a.pid.remote() for a in executor.actors])


def test_ray_settings_refuse_nothing_silently(tmp_path: Path) -> None:
    from app.config import Settings

    assert Settings(executor="ray").executor == "ray"
    with pytest.raises(ValueError):
        Settings(executor="dask")  # type: ignore[arg-type]
