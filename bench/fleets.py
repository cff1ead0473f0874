"""Fleet benchmark: client updates per second of a fleet through the service beside the
plain single-threaded loop that does the same work in one process (restore the global
weights, train the client's epochs, save, read the saved weights, average), in one run."""

from __future__ import annotations

import io
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

from app.demo import digits_28
from app.federated.partition import make_clients
from app.runtime import ckptfile
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan
from bench.harness import Service

CONFIGS = {  # name: (clients, rounds, examples)
    "small clients": (40, 20, 1600),  # ~40 examples each: 3 steps of 16, overhead-heavy
    "large clients": (8, 20, 1600),  # ~200 examples each: 13 steps of 16
}
BATCH, SEED = 16, 3


def _data(n: int) -> dict[str, np.ndarray]:
    x, y = digits_28()
    return {"x": x[:n], "y": np.eye(10, dtype=np.float32)[y[:n]]}


def plain_loop(model: bytes, data: dict[str, np.ndarray], clients: list[np.ndarray],
               rounds: int) -> dict[str, float]:
    """The same rounds in one thread on one interpreter; updates/s and the time per phase."""
    lite = LiteSession(model)
    took = dict.fromkeys(("restore_s", "train_s", "save_s", "read_s", "aggregate_s"), 0.0)
    with tempfile.TemporaryDirectory(prefix="fleetlite-loop-") as tmp:
        scratch, path = Path(tmp), Path(tmp) / "w.ckpt"
        lite.save(path)
        global_bytes = path.read_bytes()
        started = time.perf_counter()
        for r in range(1, rounds + 1):
            results = []
            for c, idx in enumerate(clients):
                t0 = time.perf_counter()
                path.write_bytes(global_bytes)
                lite.restore(path)
                t1 = time.perf_counter()
                plan = Plan(epochs=1, batch_size=BATCH, shuffle=True, seed=(SEED, r, c),
                            fixed_batch=False)
                for batch in plan.batches({k: v[idx] for k, v in data.items()}, 0):
                    lite.run("train", batch)
                t2 = time.perf_counter()
                lite.save(path)
                saved = path.read_bytes()
                t3 = time.perf_counter()
                results.append((ckptfile.read(saved, scratch), len(idx)))
                t4 = time.perf_counter()
                for k, dt in zip(("restore_s", "train_s", "save_s", "read_s"),
                                 (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    took[k] += dt
            t0 = time.perf_counter()
            total = sum(n for _, n in results)
            mean = {k: (sum(w[k].astype(np.float64) * n for w, n in results) / total
                        ).astype(np.float32) for k in results[0][0]}
            global_bytes = ckptfile.write(mean, scratch)
            took["aggregate_s"] += time.perf_counter() - t0
        wall = time.perf_counter() - started
    updates = rounds * len(clients)
    return {"updates_per_s": updates / wall, **{k: v / rounds for k, v in took.items()}}


def service_fleet(svc: Service, model_id: str, dataset_id: str, clients: int,
                  rounds: int) -> dict[str, Any]:
    """The same fleet through the service: updates/s from POST to the end event."""
    with httpx.Client(base_url=svc.url, timeout=600) as api:
        started = time.perf_counter()
        r = api.post("/v1/users/bench/fleets", json={
            "model_id": model_id, "dataset_id": dataset_id, "clients": clients,
            "clients_per_round": clients, "rounds": rounds, "batch_size": BATCH, "seed": SEED})
        r.raise_for_status()
        fid = r.json()["id"]
        with connect_sse(api, "GET", f"/v1/fleets/{fid}/events") as src:
            final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
        wall = time.perf_counter() - started
        assert final["status"] == "succeeded", final
        per_round = []
        items = api.get(f"/v1/fleets/{fid}/rounds", params={"limit": 200}).json()["items"]
        for x in items:
            t = dict(x["timings"])
            # bookkeeping on the driver: the blobs stored, the rows computed, and any wait
            # for the round before's transaction (which runs beside the next round)
            t["commit_s"] = t.get("stage_s", 0.0) + t.get("wait_s", 0.0)
            per_round.append(t)
        # Rounds 2.. only: the first also builds the lanes' interpreters, reads the dataset.
        steady = _ts(items[-1]["finished_at"]) - _ts(items[1]["started_at"])
    phases = {k: float(np.mean([t.get(k, 0.0) for t in per_round])) for k in per_round[0]}
    return {"updates_per_s": rounds * clients / wall,
            "steady_updates_per_s": (rounds - 1) * clients / steady, **phases}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def bench_fleets(svc: Service, model: bytes, model_id: str) -> dict[str, Any]:
    """Every configuration: the loop, the service, and their ratio."""
    out: dict[str, Any] = {}
    for name, (n_clients, rounds, n) in CONFIGS.items():
        data = _data(n)
        buf = io.BytesIO()
        np.savez(buf, **data)
        with httpx.Client(base_url=svc.url, timeout=120) as api:
            dataset_id = api.post("/v1/users/bench/datasets", files={"file": ("d.npz",
                                  buf.getvalue())}, data={"name": name}).json()["id"]
        # The service's iid split, so both do the same work: rebuilt the same way here.
        part = make_clients(num_examples=n, partition={"kind": "iid"}, clients=n_clients,
                            holdout=0.0, seed=SEED, labels=None, natural=None)
        # The loop before and after the service, and the ratio to their mean: on this VM
        # the same loop varies by a fifth from one minute to the next.
        before = plain_loop(model, data, [part[c].train for c in range(n_clients)], rounds)
        service = service_fleet(svc, model_id, dataset_id, n_clients, rounds)
        after = plain_loop(model, data, [part[c].train for c in range(n_clients)], rounds)
        loop = {k: (before[k] + after[k]) / 2 for k in before}
        out[name] = {"clients": n_clients, "rounds": rounds,
                     "examples_per_client": n // n_clients, "loop": loop,
                     "loops": [before["updates_per_s"], after["updates_per_s"]],
                     "service": service,
                     "ratio": service["updates_per_s"] / loop["updates_per_s"],
                     "steady_ratio": service["steady_updates_per_s"] / loop["updates_per_s"]}
    return out


def print_fleets(res: dict[str, Any]) -> None:
    """The table: updates/s of both, the ratio, and where a round's time goes."""
    print(f"\nfleets, MLP on digits, batch {BATCH}, every client every round, fedavg")
    print(f"  {'':48} {'updates/s':>10} {'ratio':>7}")
    for name, r in res.items():
        label = f"{name} ({r['clients']} x ~{r['examples_per_client']} examples, " \
                f"{r['rounds']} rounds)"
        s, lp = r["service"], r["loop"]
        print(f"  {label}")
        print(f"    {'plain loop, one thread (before, after)':46} {lp['updates_per_s']:10.1f}"
              f"   ({r['loops'][0]:.1f}, {r['loops'][1]:.1f})")
        print(f"    {'service fleet, POST to end':46} {s['updates_per_s']:10.1f} "
              f"{r['ratio']:7.2f}x")
        print(f"    {'service fleet, rounds 2.. (warm)':46} "
              f"{s['steady_updates_per_s']:10.1f} {r['steady_ratio']:7.2f}x")
        print("    per round, ms: loop: restore {:.1f} train {:.1f} save {:.1f} read {:.1f} "
              "aggregate {:.1f}".format(*(1000 * lp[k] for k in (
                  "restore_s", "train_s", "save_s", "read_s", "aggregate_s"))))
        print("      service: updates {:.1f} wall (summed over threads: restore {:.1f} train "
              "{:.1f} save {:.1f} read {:.1f}), aggregate {:.1f}, plan {:.1f}, bookkeeping "
              "{:.1f}; beside the next round: evaluate {:.1f}".format(*(1000 * s.get(k, 0.0)
                                                                   for k in (
                  "updates_s", "updates_restore_s", "updates_train_s", "updates_save_s",
                  "updates_read_s", "aggregate_s", "plan_s", "commit_s", "evaluate_s"))))


def main() -> None:
    """`python -m bench.fleets`: the fleet table alone (a minute, where `make bench` is ten)."""
    import models  # the repository's model builders, as `make bench` uses them

    mlp = models.build_cached("mlp")
    svc = Service()
    try:
        with httpx.Client(base_url=svc.url, timeout=120) as api:
            model_id = api.post("/v1/models", files={"file": ("mlp.tflite", mlp)},
                                data={"name": "mlp"}).json()["id"]
        print_fleets(bench_fleets(svc, mlp, model_id))
    finally:
        svc.close()


if __name__ == "__main__":
    main()
