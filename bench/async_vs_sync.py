"""Synchronous FedAvg against asynchronous FedBuff and FedAsync on one population (issue 24,
item 5c): the catalogue's device mix, diurnal availability, scikit-learn's digits (28x28)
split iid over 100 devices. GET /v1/fleets/compare gives each fleet's accuracy against
virtual time; the table says how long each takes to reach the sync fleet's best accuracy
(and 95 % of it), in virtual hours.

python -m bench.async_vs_sync"""

from __future__ import annotations

import io
import sys
import time
from typing import Any

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

import models
from app.demo import digits_28
from app.services.charts import duration
from bench.harness import Service

CLIENTS, PER_ROUND, BATCH, SEED = 100, 10, 16, 1
COMMON: dict[str, Any] = {
    "clients": CLIENTS, "clients_per_round": PER_ROUND, "batch_size": BATCH, "seed": SEED,
    "partition": {"kind": "iid"}, "devices": {"availability": "diurnal"}}
# name: the spec's own part; the async fleets get more server updates, to catch up
FLEETS: dict[str, dict[str, Any]] = {
    "sync FedAvg, 10 a round": {"rounds": 40},
    "FedBuff C=20 K=10": {"rounds": 120, "mode": "async", "async": {
        "algorithm": "fedbuff", "concurrency": 20, "buffer_size": 10}},
    "FedAsync C=20": {"rounds": 600, "mode": "async", "async": {
        "algorithm": "fedasync", "concurrency": 20, "mixing": 0.6}},
}


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _run(api: httpx.Client, spec: dict[str, Any]) -> str:
    r = api.post("/v1/users/bench/fleets", json=spec)
    r.raise_for_status()
    fid: str = r.json()["id"]
    with connect_sse(api, "GET", f"/v1/fleets/{fid}/events", timeout=3600) as src:
        final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
    assert final["status"] == "succeeded", final
    return fid


def _rounds(api: httpx.Client, fleet_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get(f"/v1/fleets/{fleet_id}/rounds",
                       params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def _first(seconds: list[float], accuracy: list[float | None], target: float) -> float | None:
    return next((t for t, a in zip(seconds, accuracy, strict=True)
                 if a is not None and a >= target), None)


def _when(s: float | None) -> str:
    return "never" if s is None else duration(s)


def main() -> None:
    """Run the three fleets, compare them, print the table."""
    x, y = digits_28()
    onehot = np.eye(10, dtype=np.float32)[y]
    svc = Service()
    try:
        with httpx.Client(base_url=svc.url, timeout=900) as api:
            model_id = api.post("/v1/models", files={"file": ("m.tflite",
                                                              models.build_cached("mlp"))},
                                data={"name": "mlp"}).json()["id"]
            upload = "/v1/users/bench/datasets"
            train = api.post(upload, files={"file": ("d.npz", _npz(x=x[:1400], y=onehot[:1400]))},
                             data={"name": "train"}).json()["id"]
            test = api.post(upload, files={"file": ("t.npz", _npz(x=x[1400:], y=onehot[1400:]))},
                            data={"name": "test"}).json()["id"]
            ids, wall = [], []
            for name, own in FLEETS.items():
                t0 = time.perf_counter()
                ids.append(_run(api, {"model_id": model_id, "dataset_id": train,
                                      "test_dataset_id": test, "name": name, **COMMON, **own}))
                wall.append(time.perf_counter() - t0)
            got = api.get("/v1/fleets/compare", params={"ids": ",".join(ids)})
            got.raise_for_status()
            fleets = got.json()["fleets"]
            stale = [_rounds(api, i) for i in ids]
    finally:
        svc.close()
    best = fleets[0]["summary"]["best_accuracy"]
    print(f"Reference: the sync fleet's best test accuracy {best:.4f}. {CLIENTS} devices "
          "(catalogue mix, diurnal), digits iid, MLP, batch 16, one local epoch.\n")
    print("| fleet | server updates | to sync's best | to 95 % of it | virtual time in all "
          "| best accuracy | updates completed / dropped | mean staleness | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f, rounds, w in zip(fleets, stale, wall, strict=True):
        s = f["summary"]
        upd = s["updates"]
        taus = [r["staleness"]["mean"] for r in rounds if (r.get("staleness") or {}).get("mean")
                is not None]
        print(f"| {f['name']} | {s['rounds']} | {_when(_first(f['seconds'], f['accuracy'], best))}"
              f" | {_when(_first(f['seconds'], f['accuracy'], 0.95 * best))}"
              f" | {_when(s['virtual_seconds'])} | {s['best_accuracy']:.4f} | {upd['completed']} / "
              f"{upd['dropped_offline'] + upd['dropped_battery']}"
              f" | {np.mean(taus) if taus else 0.0:.2f} | {w:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
