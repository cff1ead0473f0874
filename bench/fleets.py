"""Fleet benchmark: client updates per second of a fleet through the service beside the
plain loop that does the same work in one process (restore the global weights, train the
client's epochs, save, read the saved weights, average) on one thread and on two, and the
CPU each side spends an update, in one run."""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
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
               rounds: int, threads: int = 1) -> dict[str, float]:
    """The same rounds on `threads` interpreters in as many threads, each taking the round's
    next update when its last ends, the average on this one; updates/s and phase times."""
    lites = [LiteSession(model) for _ in range(threads)]
    took = dict.fromkeys(("restore_s", "train_s", "save_s", "read_s", "aggregate_s"), 0.0)
    with tempfile.TemporaryDirectory(prefix="fleetlite-loop-") as tmp, \
            ThreadPoolExecutor(threads) as pool:
        # The global written once a round, every update restoring that file; each saves to
        # a file of its own (saving over the file just restored costs ext4 a flush).
        scratch, start = Path(tmp), Path(tmp) / "global-0.ckpt"
        lites[0].save(start)
        lock = threading.Lock()

        def lane(i: int, r: int, todo: deque[int], out: dict[int, Any]) -> dict[str, float]:
            lite = lites[i]
            mine = dict.fromkeys(took, 0.0)
            while True:
                with lock:
                    if not todo:
                        return mine
                    c = todo.popleft()
                t0 = time.perf_counter()
                lite.restore(start)
                t1 = time.perf_counter()
                plan = Plan(epochs=1, batch_size=BATCH, shuffle=True, seed=(SEED, r, c),
                            fixed_batch=False)
                for batch in plan.batches({k: v[clients[c]] for k, v in data.items()}, 0):
                    lite.run("train", batch)
                t2 = time.perf_counter()
                path = scratch / f"update-{r}-{c}.ckpt"
                lite.save(path)
                saved = path.read_bytes()
                path.unlink()
                t3 = time.perf_counter()
                out[c] = (ckptfile.read(saved, scratch), len(clients[c]))
                t4 = time.perf_counter()
                for k, dt in zip(("restore_s", "train_s", "save_s", "read_s"),
                                 (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    mine[k] += dt

        started, cpu = time.perf_counter(), time.process_time()
        for r in range(1, rounds + 1):
            todo, res = deque(range(len(clients))), dict[int, Any]()
            for f in [pool.submit(lane, i, r, todo, res) for i in range(threads)]:
                for k, v in f.result().items():
                    took[k] += v
            t0 = time.perf_counter()
            results = [res[c] for c in range(len(clients))]
            total = sum(n for _, n in results)
            mean = {k: (sum(w[k].astype(np.float64) * n for w, n in results) / total
                        ).astype(np.float32) for k in results[0][0]}
            start.unlink()
            start = scratch / f"global-{r}.ckpt"
            start.write_bytes(ckptfile.write(mean, scratch))
            took["aggregate_s"] += time.perf_counter() - t0
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    updates = rounds * len(clients)
    return {"updates_per_s": updates / wall, "cpu_ms": 1000 * cpu / updates,
            **{k: v / rounds for k, v in took.items()}}


def service_fleet(svc: Service, model_id: str, dataset_id: str, clients: int,
                  rounds: int) -> dict[str, Any]:
    """The same fleet through the service: updates/s from POST to the end event."""
    with httpx.Client(base_url=svc.url, timeout=600) as api:
        started, cpu = time.perf_counter(), _cpu_s(svc.proc.pid)
        r = api.post("/v1/users/bench/fleets", json={
            "model_id": model_id, "dataset_id": dataset_id, "clients": clients,
            "clients_per_round": clients, "rounds": rounds, "batch_size": BATCH, "seed": SEED})
        r.raise_for_status()
        fid = r.json()["id"]
        with connect_sse(api, "GET", f"/v1/fleets/{fid}/events") as src:
            final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
        wall, cpu = time.perf_counter() - started, _cpu_s(svc.proc.pid) - cpu
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
    return {"updates_per_s": rounds * clients / wall, "cpu_ms": 1000 * cpu / (rounds * clients),
            "steady_updates_per_s": (rounds - 1) * clients / steady, **phases}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system, every thread) a process has used: on a shared machine
    whose load moves the wall figures by a fifth, what the work itself costs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        # The loops before and after the service, and the ratio to their mean: on this VM
        # the same loop varies by a fifth from one minute to the next. The two-thread loop
        # is the limit two lanes can reach.
        idx = [part[c].train for c in range(n_clients)]
        before = [plain_loop(model, data, idx, rounds, t) for t in (1, 2)]
        service = service_fleet(svc, model_id, dataset_id, n_clients, rounds)
        after = [plain_loop(model, data, idx, rounds, t) for t in (2, 1)][::-1]
        loop, loop2 = ({k: (b[k] + a[k]) / 2 for k in b} for b, a in zip(before, after,
                                                                          strict=True))
        out[name] = {"clients": n_clients, "rounds": rounds,
                     "examples_per_client": n // n_clients, "loop": loop,
                     "loops": [before[0]["updates_per_s"], after[0]["updates_per_s"]],
                     "loop2": loop2,
                     "loops2": [before[1]["updates_per_s"], after[1]["updates_per_s"]],
                     "service": service,
                     "ratio": service["updates_per_s"] / loop["updates_per_s"],
                     "steady_ratio": service["steady_updates_per_s"] / loop["updates_per_s"],
                     "ratio2": service["updates_per_s"] / loop2["updates_per_s"],
                     "steady_ratio2": service["steady_updates_per_s"] / loop2["updates_per_s"]}
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
        lp2 = r["loop2"]
        print(f"    {'plain loop, one thread (before, after)':46} {lp['updates_per_s']:10.1f}"
              f"   ({r['loops'][0]:.1f}, {r['loops'][1]:.1f})")
        print(f"    {'plain loop, two threads (before, after)':46} "
              f"{lp2['updates_per_s']:10.1f} {lp2['updates_per_s'] / lp['updates_per_s']:7.2f}x"
              f"  ({r['loops2'][0]:.1f}, {r['loops2'][1]:.1f})")
        print(f"    {'service fleet, POST to end':46} {s['updates_per_s']:10.1f} "
              f"{r['ratio']:7.2f}x  {r['ratio2']:.2f} of two threads")
        print(f"    {'CPU ms an update: loop, two threads, service':46} {lp['cpu_ms']:10.2f} "
              f"{lp2['cpu_ms']:7.2f} {s['cpu_ms']:7.2f}  (two threads / service "
              f"{lp2['cpu_ms'] / s['cpu_ms']:.2f})")
        print(f"    {'service fleet, rounds 2.. (warm)':46} "
              f"{s['steady_updates_per_s']:10.1f} {r['steady_ratio']:7.2f}x  "
              f"{r['steady_ratio2']:.2f} of two threads")
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
