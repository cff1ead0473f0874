"""Fleets as records, and fleets shared: reads of a finished 2,000-device fleet on a 200 MB
dataset after a restart (they come from the record alone), the time from POST to the first
round of a fleet posted behind another user's long one, and the server's peak memory while
personalizing 500 and 2,000 devices (clients are personalized a page at a time).

``python -m bench.fleet_record`` prints this table alone.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import models
from bench.harness import Service

EXAMPLES = 64_000  # x: 64,000 x 28 x 28 float32 = 200.7 MB
DEVICES = 2_000


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _wait(api: httpx.Client, fleet_id: str, rounds: int | None = None) -> dict[str, Any]:
    while True:
        fleet = api.get(f"/v1/fleets/{fleet_id}").json()
        if fleet["status"] not in ("queued", "running", "paused") or (
                rounds is not None and fleet["progress"]["rounds_done"] >= rounds):
            return fleet  # type: ignore[no-any-return]
        time.sleep(0.01)


def _timed(api: httpx.Client, path: str, n: int = 10) -> tuple[float, float]:
    t0 = time.perf_counter()
    api.get(path).raise_for_status()
    cold = time.perf_counter() - t0
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        api.get(path).raise_for_status()
        runs.append(time.perf_counter() - t0)
    return cold * 1000, statistics.median(runs) * 1000


def _peak_mb(svc: Service) -> float:
    for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_fleet_record() -> dict[str, Any]:
    """Every figure of the table, in one run."""
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    x = rng.random((EXAMPLES, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, EXAMPLES)]
    svc = Service()
    try:
        with httpx.Client(base_url=svc.url, timeout=600) as api:
            mid = api.post("/v1/models", files={"file": ("m.tflite", models.build_cached("mlp"))},
                           data={"name": "mlp"}).json()["id"]
            body = _npz(x=x, y=y)
            out["dataset_mb"] = len(body) / 1e6
            ds = api.post("/v1/users/alice/datasets", files={"file": ("d.npz", body)},
                          data={"name": "big"}).json()["id"]
            del body
            spec = {"model_id": mid, "dataset_id": ds, "clients": DEVICES,
                    "clients_per_round": 20, "rounds": 2, "holdout": 0.1, "batch_size": 32}
            fleet = api.post("/v1/users/alice/fleets", json=spec).json()
            _wait(api, fleet["id"])
            svc.restart()
            for name in ("clients", "report"):
                out[f"{name}_ms"] = _timed(api, f"/v1/fleets/{fleet['id']}/{name}")
            few = _npz(x=x[:2_000], y=y[:2_000])
            sets = {u: api.post(f"/v1/users/{u}/datasets", files={"file": ("s.npz", few)},
                                data={"name": "small"}).json()["id"] for u in ("alice", "bob")}
            small = {"model_id": mid, "clients": 20, "clients_per_round": 2, "batch_size": 32}
            t0 = time.perf_counter()
            alone = api.post("/v1/users/bob/fleets", json={**small, "rounds": 1,
                                                           "dataset_id": sets["bob"]}).json()
            _wait(api, alone["id"], 1)
            out["first_round_alone_s"] = time.perf_counter() - t0
            long = api.post("/v1/users/alice/fleets",
                            json={**small, "rounds": 100_000, "local_epochs": 3,
                                  "dataset_id": sets["alice"]}).json()
            _wait(api, long["id"], 1)
            t0 = time.perf_counter()
            behind = api.post("/v1/users/bob/fleets", json={**small, "rounds": 1,
                                                            "dataset_id": sets["bob"]}).json()
            _wait(api, behind["id"], 1)
            out["first_round_behind_s"] = time.perf_counter() - t0
            api.post(f"/v1/fleets/{long['id']}/cancel")
            _wait(api, long["id"])
    finally:
        svc.close()
    for devices in (500, 2_000):
        out[f"peak_mb_{devices}"] = _personalize_peak(devices, x[:20_000], y[:20_000])
    return out


def _personalize_peak(devices: int, x: np.ndarray, y: np.ndarray) -> float:
    """The server's peak RSS over a fleet that personalizes every one of `devices`."""
    svc = Service()
    try:
        with httpx.Client(base_url=svc.url, timeout=600) as api:
            mid = api.post("/v1/models", files={"file": ("m.tflite", models.build_cached("mlp"))},
                           data={"name": "mlp"}).json()["id"]
            ds = api.post("/v1/users/m/datasets", files={"file": ("d.npz", _npz(x=x, y=y))},
                          data={"name": "d"}).json()["id"]
            fleet = api.post("/v1/users/m/fleets", json={
                "model_id": mid, "dataset_id": ds, "clients": devices, "clients_per_round": 10,
                "rounds": 1, "batch_size": 32, "personal": ["dense_2/"]}).json()
            _wait(api, fleet["id"])
            return _peak_mb(svc)
    finally:
        svc.close()


def print_fleet_record(r: dict[str, Any]) -> None:
    """The table."""
    print(f"fleet records: {DEVICES:,} devices on a {r['dataset_mb']:.0f} MB dataset, after a "
          "restart (first read, then the median of 10)")
    for name in ("clients", "report"):
        cold, warm = r[f"{name}_ms"]
        print(f"  GET /v1/fleets/{{id}}/{name:<8} {cold:8.1f} ms first  {warm:8.1f} ms after")
    print(f"  POST to first round: alone {r['first_round_alone_s']:.2f} s, behind another "
          f"user's 100,000-round fleet {r['first_round_behind_s']:.2f} s")
    print(f"  peak server RSS personalizing 500 devices {r['peak_mb_500']:.0f} MB, 2,000 devices "
          f"{r['peak_mb_2000']:.0f} MB (1,500 MLP checkpoints held at once would be "
          f"{1500 * 0.408:.0f} MB)")


if __name__ == "__main__":
    print_fleet_record(bench_fleet_record())
