"""A fleet stopped by SIGTERM or killed by SIGKILL in the middle resumes from its last
finished round and ends bit-identical to an uninterrupted twin."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.tables import FleetRow
from tests.e2e.test_restart import ServerProcess, env_for, settings  # noqa: F401 - fixture
from tests.fleets.support import digits, finish, start, upload_dataset
from tests.helpers import upload

pytestmark = pytest.mark.slow
ROUNDS = 30


def _spec(model_id: str, dataset_id: str, personal: list[str]) -> dict[str, Any]:
    # Stateful on the server (fedadam's moments), on the devices (FedPer's own layer) and on
    # the clock (batteries, diurnal windows): all of it must come back exactly. 40 devices,
    # so that at the start of the diurnal day several are eligible (with 12, one was).
    return {"model_id": model_id, "dataset_id": dataset_id, "clients": 40,
            "clients_per_round": 4, "rounds": ROUNDS, "batch_size": 16, "holdout": 0.2,
            "partition": {"kind": "dirichlet", "alpha": 0.5, "min_partition_size": 0},
            "strategy": {"name": "fedadam"},
            "personal": personal, "finetune_epochs": 1, "seed": 5,
            "devices": {"availability": "diurnal"}, "over_commit": 1.5}


def _wait_rounds(c: httpx.Client, fleet_id: str, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(c.get(f"/v1/fleets/{fleet_id}").json()["global_checkpoint_ids"]) < n:
        assert time.monotonic() < deadline, "the fleet did not get going"
        time.sleep(0.05)


def _fingerprint(c: httpx.Client, fleet: dict[str, Any]) -> dict[str, Any]:
    sha = [c.get(f"/v1/checkpoints/{k}").json()["sha256"] for k in fleet["global_checkpoint_ids"]]
    clients = c.get(f"/v1/fleets/{fleet['id']}/clients").json()["items"]
    personal = [c.get(f"/v1/checkpoints/{k['checkpoint_id']}").json() for k in clients]
    # A device's steps count every update once: a round re-run after the restart must not
    # add to counters that reached the session rows before its round committed.
    steps = [c.get(f"/v1/sessions/{k['session_id']}").json()["steps"] for k in clients]
    rounds = c.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    timeline = [(r["selected"], r["completed"], r["virtual_end_s"]) for r in rounds]
    return {"global": sha, "personal": [(p["sha256"], p["step"]) for p in personal],
            "steps": steps, "timeline": timeline,
            "accuracy": [(k["accuracy_global"], k["accuracy_personal"]) for k in clients]}


# Without `personal` a FedAvg device has no checkpoint of its own during the run: its steps
# live in its session row alone, which the restart's reconcile must leave to the rounds.
@pytest.mark.parametrize(("sig", "personal"), [
    (signal.SIGKILL, ["dense_2/"]), (signal.SIGTERM, ["dense_2/"]), (signal.SIGKILL, [])],
    ids=["sigkill", "sigterm", "sigkill-fedavg-finetune"])
def test_interrupted_fleet_resumes_bit_identical(settings: Settings,  # noqa: F811
                                                 mlp_bytes: bytes, tmp_path: Path,
                                                 sig: int, personal: list[str]) -> None:
    env = env_for(settings)
    first = ServerProcess(env, tmp_path / "server.log")
    with httpx.Client(base_url=first.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        dataset_id = upload_dataset(c, "res", digits(600))
        fleet = start(c, "res", **_spec(model_id, dataset_id, personal))
        _wait_rounds(c, fleet["id"], 2)
    graceful = first.stop(sig)
    assert graceful == (sig == signal.SIGTERM)
    with Session(create_engine(settings.database_url)) as db:  # stopped part way, for real
        row = db.get(FleetRow, fleet["id"])
        assert row is not None and row.status == "running", row
        assert 2 <= row.rounds_done < ROUNDS, row.rounds_done

    second = ServerProcess(env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            resumed = finish(c, fleet["id"])
            twin = finish(c, start(c, "res", **_spec(model_id, dataset_id, personal))["id"])
            assert len(resumed["global_checkpoint_ids"]) == ROUNDS
            assert _fingerprint(c, resumed) == _fingerprint(c, twin)
    finally:
        second.stop(signal.SIGTERM)
