"""An asynchronous fleet killed by SIGKILL in the middle resumes from its last server update,
trains again the updates that were running, and ends bit-identical to an uninterrupted twin."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.tables import FleetRow
from tests.e2e.test_fleet_resume import _fingerprint, _wait_rounds
from tests.e2e.test_restart import ServerProcess, env_for, settings  # noqa: F401 - fixture
from tests.fleets.support import digits, finish, start, upload_dataset
from tests.helpers import upload

pytestmark = pytest.mark.slow
ROUNDS = 30


def _spec(model_id: str, dataset_id: str, asy: dict[str, Any],
          devices: dict[str, Any] | None = None) -> dict[str, Any]:
    # State on the server (FedBuff's buffer between updates, the versions running updates
    # started from), on the devices (FedPer's own layer) and on the clock (batteries,
    # diurnal windows, the running updates): all of it must come back exactly.
    return {"model_id": model_id, "dataset_id": dataset_id, "clients": 40,
            "clients_per_round": 4, "rounds": ROUNDS, "batch_size": 16, "holdout": 0.2,
            "partition": {"kind": "shards", "classes_per_client": 2}, "personal": ["dense_2/"],
            "finetune_epochs": 1, "seed": 5, "devices": devices or {"availability": "diurnal"},
            "mode": "async", "async": asy}


# Two exact classes, one four times faster, and K = C: fast devices arrive and start again
# within one server update, so updates run across the kill from their device's own layer
# of an arrival in the same update.
TWO_SPEEDS = {"classes": {
    "fast": {"ms_per_example": 20.0, "down_kbps": 8000.0, "up_kbps": 4000.0, "train_watts": 2.0,
             "radio_joules_per_mb": 3.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0},
    "slow": {"ms_per_example": 80.0, "down_kbps": 2000.0, "up_kbps": 1000.0, "train_watts": 1.0,
             "radio_joules_per_mb": 5.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0}},
    "mix": {"fast": 1, "slow": 1}}


@pytest.mark.parametrize(("asy", "devices"), [
    ({"algorithm": "fedbuff", "concurrency": 8, "buffer_size": 3}, None),
    ({"algorithm": "fedasync", "concurrency": 6, "max_staleness": 4}, None),
    ({"algorithm": "fedbuff", "concurrency": 8, "buffer_size": 8}, TWO_SPEEDS)],
    ids=["fedbuff", "fedasync", "fedbuff-restarts"])
def test_killed_async_fleet_resumes_bit_identical(settings: Settings,  # noqa: F811
                                                  mlp_bytes: bytes, tmp_path: Path,
                                                  asy: dict[str, Any],
                                                  devices: dict[str, Any] | None) -> None:
    env = env_for(settings)
    first = ServerProcess(env, tmp_path / "server.log")
    with httpx.Client(base_url=first.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        dataset_id = upload_dataset(c, "res", digits(600))
        fleet = start(c, "res", **_spec(model_id, dataset_id, asy, devices))
        _wait_rounds(c, fleet["id"], 2)
    first.stop(signal.SIGKILL)
    with Session(create_engine(settings.database_url)) as db:  # stopped part way, for real
        row = db.get(FleetRow, fleet["id"])
        assert row is not None and row.status == "running", row
        assert 2 <= row.rounds_done < ROUNDS, row.rounds_done

    second = ServerProcess(env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            resumed = finish(c, fleet["id"])
            twin = finish(c, start(c, "res", **_spec(model_id, dataset_id, asy, devices))["id"])
            assert len(resumed["global_checkpoint_ids"]) == ROUNDS
            assert _fingerprint(c, resumed) == _fingerprint(c, twin)
            rounds = c.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
            if devices is not None:  # a device arrived and started again in one update
                assert any(len(set(r["selected"])) < len(r["selected"]) for r in rounds)
            assert [r["staleness"] for r in rounds] == [
                r["staleness"] for r in c.get(f"/v1/fleets/{twin['id']}/rounds").json()["items"]]
    finally:
        second.stop(signal.SIGTERM)
