"""Fleets on Ray: client updates per second of one fleet on the local executor and on Ray with
two actors, in one run; Ray's start-up cost; and, from the measured cost of an update, what
a fleet of 1,000,000 devices with 1,000 a round would need per round for the MLP and the CNN.

python -m bench.ray_fleet"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

import models
from bench.harness import Service

CLIENTS, PER_ROUND, ROUNDS, BATCH = 40, 20, 5, 16
EXAMPLES = {"mlp": 50, "cnn": 20}  # per device


def _data(name: str, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "mlp":
        return {"x": rng.random((n, 28, 28), dtype=np.float32),
                "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]}
    return {"image": rng.random((n, 64, 64, 3), dtype=np.float32),
            "label": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]}


def run_fleet(svc: Service, name: str, rounds: int = ROUNDS) -> dict[str, Any]:
    """One fleet through the service: updates/s, and the per-update cost its rounds report."""
    with httpx.Client(base_url=svc.url, timeout=900) as api:
        model_id = api.post("/v1/models", files={"file": ("m.tflite", models.build_cached(name))},
                            data={"name": name}).json()["id"]
        buf = io.BytesIO()
        np.savez(buf, **_data(name, CLIENTS * EXAMPLES[name]))
        ds = api.post("/v1/users/bench/datasets", files={"file": ("d.npz", buf.getvalue())},
                      data={"name": name}).json()["id"]
        started = time.perf_counter()
        r = api.post("/v1/users/bench/fleets", json={
            "model_id": model_id, "dataset_id": ds, "clients": CLIENTS,
            "clients_per_round": PER_ROUND, "rounds": rounds, "batch_size": BATCH})
        r.raise_for_status()
        fid = r.json()["id"]
        with connect_sse(api, "GET", f"/v1/fleets/{fid}/events") as src:
            final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
        wall = time.perf_counter() - started
        assert final["status"] == "succeeded", final
        rows = api.get(f"/v1/fleets/{fid}/rounds").json()["items"]
    per_update = float(np.mean([sum(v for k, v in r["timings"].items()
                                    if k.startswith("updates_") and k != "updates_s")
                                / len(r["completed"]) for r in rows]))
    aggregate = float(np.mean([r["timings"]["aggregate_s"] for r in rows]))
    return {"updates_per_s": rounds * PER_ROUND / wall, "cpu_s_per_update": per_update,
            "aggregate_s": aggregate, "wall_s": wall}


def main() -> None:
    """Both executors, one after the other, and the projection."""
    out: dict[str, Any] = {}
    for executor in ("local", "ray"):
        env = {"FLEETLITE_EXECUTOR": executor, "FLEETLITE_RAY_ACTORS": "2"}
        started = time.perf_counter()
        svc = Service(**env)
        out[f"{executor}_start_s"] = time.perf_counter() - started
        try:
            # The first fleet also starts the workers' interpreters (on Ray: each actor
            # imports TensorFlow and loads the model): timed apart, not in the figures.
            out[f"{executor}_warm_up_s"] = run_fleet(svc, "mlp", rounds=1)["wall_s"]
            for name in ("mlp", "cnn"):
                out[f"{executor}_{name}"] = run_fleet(svc, name)
        finally:
            svc.close()
    print(f"\nfleets on Ray: {CLIENTS} devices, {PER_ROUND} a round, {ROUNDS} rounds, "
          f"batch {BATCH}; Ray with 2 actors on this machine")
    print(f"  service start: local {out['local_start_s']:.1f} s, ray "
          f"{out['ray_start_s']:.1f} s (Ray's own start-up: "
          f"{out['ray_start_s'] - out['local_start_s']:.1f} s); a first one-round fleet: "
          f"local {out['local_warm_up_s']:.1f} s, ray {out['ray_warm_up_s']:.1f} s")
    print(f"  {'model':6} {'local updates/s':>16} {'ray updates/s':>14} {'ratio':>6}")
    for name in ("mlp", "cnn"):
        loc, ray = out[f"local_{name}"], out[f"ray_{name}"]
        print(f"  {name:6} {loc['updates_per_s']:16.1f} {ray['updates_per_s']:14.1f} "
              f"{ray['updates_per_s'] / loc['updates_per_s']:6.2f}")
    print("\n  1,000,000 devices, 1,000 a round, one local epoch of "
          "{mlp} (MLP) or {cnn} (CNN) examples each:".format(**EXAMPLES))
    print(f"  {'model':6} {'CPU s/update':>13} {'core-hours/round':>17} "
          f"{'aggregate s/round':>18} {'s/round on 64 cores':>20}")
    for name in ("mlp", "cnn"):
        cost = out[f"local_{name}"]["cpu_s_per_update"]
        agg = out[f"local_{name}"]["aggregate_s"] * 1000 / PER_ROUND  # linear in clients
        core_h = 1000 * cost / 3600
        print(f"  {name:6} {cost:13.4f} {core_h:17.4f} {agg:18.1f} "
              f"{1000 * cost / 64 + agg:20.1f}")


if __name__ == "__main__":
    main()
