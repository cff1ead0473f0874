"""Fleets at scale: thousands of devices in the memory of a few interpreters (a fleet never
fills the live cap), and the same results whatever the number of interpreter threads."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import models
from tests.e2e.test_fleet import rss_mb
from tests.e2e.test_restart import ServerProcess, env_for
from tests.fleets.support import digits, finish, start, upload_dataset
from tests.helpers import backend_settings, running_server, upload

pytestmark = pytest.mark.slow
CLIENTS, CAP = 2000, 100


def test_two_thousand_clients_run_in_a_few_interpreters(tmp_path: Path) -> None:
    with backend_settings("sqlite-local", tmp_path, None, max_live_sessions=CAP,
                          autosave_seconds=3600.0) as settings:
        server = ServerProcess(env_for(settings), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            model_id = upload(c, models.build_cached("head"), "head")
            rng = np.random.default_rng(0)
            n = 3 * CLIENTS
            data = {"bottleneck": rng.random((n, 64), dtype=np.float32),
                    "label": rng.integers(0, 4, n).astype(np.int32)}
            dataset_id = upload_dataset(c, "big", data)
            before = rss_mb(server.proc.pid)
            fleet = finish(c, start(c, "big", model_id=model_id, dataset_id=dataset_id,
                                    clients=CLIENTS, clients_per_round=400, rounds=6,
                                    batch_size=4, seed=1)["id"])
            after = rss_mb(server.proc.pid)
            live = float(next(line.split()[-1] for line in c.get("/metrics").text.splitlines()
                              if line.startswith("fleetlite_live_sessions ")))
            rounds = c.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
            touched = {cid for r in rounds for cid in r["completed"]}
            page = c.get(f"/v1/fleets/{fleet['id']}/clients",
                         params={"limit": 500, "cursor": "999"}).json()
        assert len(rounds) == 6 and all(len(r["completed"]) == 400 for r in rounds)
        # 6 draws of 400 of 2,000: about 2000 x (1 - 0.8^6) = 1,476 different devices took part
        assert len(touched) > 1400
        assert [k["client_id"] for k in page["items"]] == list(range(1000, 1500))
        assert live == 0  # the updates ran on the lanes: no device's session was loaded
        # 1,400+ interpreters would take gigabytes.
        assert after < before + 600, (before, after)
    finally:
        server.stop(signal.SIGTERM)


def _run(tmp: Path, threads: int, spec: dict[str, Any], mlp: bytes) -> list[str]:
    with running_server("sqlite-local", tmp, None, runtime_threads=threads) as live, \
            httpx.Client(base_url=live.url, timeout=120) as c:
        model_id = upload(c, mlp, "mlp")
        dataset_id = upload_dataset(c, "thr", digits(500))
        fleet = finish(c, start(c, "thr", model_id=model_id, dataset_id=dataset_id, **spec)["id"])
        return [c.get(f"/v1/checkpoints/{k}").json()["sha256"]
                for k in fleet["global_checkpoint_ids"]]


def test_results_do_not_depend_on_the_number_of_threads(tmp_path: Path, mlp_bytes: bytes
                                                        ) -> None:
    spec = {"clients": 16, "clients_per_round": 8, "rounds": 3, "batch_size": 8,
            "partition": {"kind": "shards", "classes_per_client": 2}, "seed": 4,
            "strategy": {"name": "fedyogi"}}
    one = _run(tmp_path / "one", 1, spec, mlp_bytes)
    many = _run(tmp_path / "many", 6, spec, mlp_bytes)
    assert one == many


def test_a_hundred_thousand_devices_cost_what_they_touch(tmp_path: Path) -> None:
    """100,000 devices, 100 a round: rows, sessions and memory for the few hundred that
    trained, not for the population."""
    from sqlalchemy import create_engine, func, select

    from app.db.tables import CheckpointRow, FleetClientRow, SessionRow

    with backend_settings("sqlite-local", tmp_path, None, autosave_seconds=3600.0) as settings:
        server = ServerProcess(env_for(settings), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            model_id = upload(c, models.build_cached("head"), "head")
            rng = np.random.default_rng(0)
            n = 200_000
            data = {"bottleneck": rng.random((n, 64), dtype=np.float32),
                    "label": rng.integers(0, 4, n).astype(np.int32)}
            dataset_id = upload_dataset(c, "huge", data)
            del data
            before = rss_mb(server.proc.pid)
            fleet = finish(c, start(c, "huge", model_id=model_id, dataset_id=dataset_id,
                                    clients=100_000, clients_per_round=100, rounds=3,
                                    batch_size=2, seed=5,
                                    devices={"availability": "diurnal"})["id"])
            after = rss_mb(server.proc.pid)
            rounds = c.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
            touched = {cid for r in rounds for cid in r["completed"]}
            far = c.get(f"/v1/fleets/{fleet['id']}/clients",
                        params={"limit": 3, "cursor": "99996"}).json()["items"]
        engine = create_engine(settings.database_url)
        with engine.connect() as db:
            client_rows = db.scalar(select(func.count()).select_from(FleetClientRow))
            session_rows = db.scalar(select(func.count()).select_from(SessionRow))
            ckpt_rows = db.scalar(select(func.count()).select_from(CheckpointRow))
        engine.dispose()
        assert len(rounds) == 3 and 250 <= len(touched) <= 300
        assert client_rows == session_rows == len(touched)  # made on first selection only
        assert ckpt_rows == 3  # the global ones: these devices keep nothing of their own
        assert [k["client_id"] for k in far] == [99997, 99998, 99999]
        assert all(k["session_id"] is None or k["client_id"] in touched for k in far)
        assert after - before < 500, (before, after)
        print(f"100,000 devices: {client_rows} client rows, {session_rows} sessions, "
              f"RSS {before:.0f} -> {after:.0f} MB")
    finally:
        server.stop(signal.SIGTERM)
