"""``make bench-peers``: fleetlite beside Flower 1.42 on one federated workload, alternating.

The workload (the issue's table): scikit-learn's digits at 28x28, 360 held out for the
global model's evaluation after every round, the rest split iid over the devices with
fleetlite's own partition code (so both sides train the same clients on the same examples);
the blog's MLP from the same initial checkpoint; FedAvg, batch 16, one local epoch.
fleetlite's side: a server started as `make run` starts it, the model and datasets
uploaded, then the fleet timed from its POST to its stream's `end`. Flower's side:
``bench.peers_flower`` in its own virtualenv (``--peers-python``), timed around
``run_simulation``. Peak memory: the RSS of each side's whole process tree, sampled every
0.1 s. Prints the table of ratios and writes bench/peers.json.

python -m bench.peers --peers-python .cache/peers-venv/bin/python [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from httpx_sse import connect_sse

import models
from app.demo import digits_28
from app.federated.partition import make_clients
from app.runtime import ckptfile
from app.runtime.interpreter import LiteSession
from bench.harness import ROOT, Service
from bench.memory import tree_rss_mb, wait_probe_gone

OUT = Path(__file__).resolve().parent / "peers.json"
HELD_OUT, BATCH, EPOCHS, LR, SEED = 360, 16, 1, 0.1, 0
WORKLOADS = {  # name: (devices, per round, rounds)
    "20 devices, 10 a round, 20 rounds": (20, 10, 20),
    "200 devices, 20 a round, 10 rounds": (200, 20, 10),
}
# Flower runs each workload with its quickstart client; the small one also per actor.
FLOWER_MODES = {"20 devices, 10 a round, 20 rounds": ("per-call", "per-actor"),
                "200 devices, 20 a round, 10 rounds": ("per-call",)}


class PeakRss:
    """The highest summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self._pid, self._every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self._pid))
            self._stop.wait(self._every)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def prepare(tmp: Path) -> dict[str, Any]:
    """The shared inputs: train/test digits, the MLP, its initial weights, each split."""
    x, labels = digits_28()
    order = np.random.default_rng(SEED).permutation(len(x))
    test, train = order[:HELD_OUT], order[HELD_OUT:]
    onehot = np.eye(10, dtype=np.float32)[labels]
    mlp = models.build_cached("mlp")
    LiteSession(mlp).save(tmp / "init.ckpt")
    init = ckptfile.read((tmp / "init.ckpt").read_bytes(), tmp)
    names = ["dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias"]
    weights = [next(v for k, v in init.items() if k.startswith(n)) for n in names]
    return {"mlp": mlp, "x": x[train], "y": onehot[train], "x_test": x[test],
            "y_test": onehot[test], "init": weights}


def flower_data(inputs: dict[str, Any], devices: int, path: Path) -> None:
    """The npz Flower's side reads: the digits, each example's client, the initial weights."""
    client_of = make_clients(num_examples=len(inputs["x"]), partition={"kind": "iid"},
                             clients=devices, holdout=0.0, seed=SEED, labels=None,
                             natural=None).client_of
    np.savez(path, x=inputs["x"], y=inputs["y"], x_test=inputs["x_test"],
             y_test=inputs["y_test"], client_of=client_of,
             **{f"init_{i}": w for i, w in enumerate(inputs["init"])})


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def run_fleetlite(svc: Service, api: httpx.Client, ids: dict[str, str],
                  workload: tuple[int, int, int]) -> dict[str, Any]:
    """One fleet: POST to `end`, rounds 2 onward from the round rows, final accuracy, peak."""
    devices, per_round, rounds = workload
    peak = PeakRss(svc.proc.pid)
    started = time.perf_counter()
    r = api.post("/v1/users/bench/fleets", json={
        "model_id": ids["model"], "dataset_id": ids["train"], "test_dataset_id": ids["test"],
        "partition": {"kind": "iid"}, "clients": devices, "clients_per_round": per_round,
        "rounds": rounds, "batch_size": BATCH, "local_epochs": EPOCHS,
        "strategy": {"name": "fedavg"}, "seed": SEED})
    r.raise_for_status()
    fid = r.json()["id"]
    with connect_sse(api, "GET", f"/v1/fleets/{fid}/events") as src:
        final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
    wall = time.perf_counter() - started
    peak_mb = peak.stop()
    assert final["status"] == "succeeded", final
    rows = api.get(f"/v1/fleets/{fid}/rounds", params={"limit": 500}).json()["items"]
    rows.sort(key=lambda row: row["round"])
    ends = [datetime.fromisoformat(row["finished_at"]).timestamp() for row in rows]
    return {"wall_s": wall, "rounds_2_on_s": ends[-1] - ends[0],
            "final_accuracy": rows[-1]["global_accuracy"], "peak_mb": peak_mb}


def run_flower(python: str, data: Path, mode: str, workload: tuple[int, int, int],
               tmp: Path) -> dict[str, Any]:
    """One Flower simulation in the peers virtualenv, its process tree watched throughout."""
    devices, per_round, rounds = workload
    config = {"mode": mode, "clients": devices, "per_round": per_round, "rounds": rounds,
              "fraction_train": per_round / devices, "batch_size": BATCH,
              "local_epochs": EPOCHS, "learning_rate": LR, "cpus": os.cpu_count() or 1}
    out = tmp / f"flower-{mode}-{devices}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "RAY_DEDUP_LOGS": "0"}
    env.pop("VIRTUAL_ENV", None)
    started = time.perf_counter()
    with (tmp / "flower.log").open("ab") as log:
        proc = subprocess.Popen([python, "-m", "bench.peers_flower", "--data", str(data),
                                 "--config", json.dumps(config), "--out", str(out)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak = PeakRss(proc.pid)
        code = proc.wait()
    peak_mb = peak.stop()
    if code != 0:
        raise RuntimeError(f"Flower's run failed (exit {code}); see {tmp / 'flower.log'}")
    res: dict[str, Any] = json.loads(out.read_text())
    res.update(peak_mb=peak_mb, process_s=time.perf_counter() - started,
               complete=res["rounds_trained"] == rounds)
    return res


def fleetlite_round(inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every workload on one fresh server (started as `make run` starts it), timed once the
    upload's probe child has exited, as on a server whose last upload is a minute old."""
    svc = Service(FLEETLITE_PROBE_IDLE_SECONDS="2")
    try:
        with httpx.Client(base_url=svc.url, timeout=900) as api:
            ids = {"model": api.post("/v1/models", files={"file": ("mlp.tflite", inputs["mlp"])},
                                     data={"name": "mlp"}).raise_for_status().json()["id"]}
            for key, x, y in (("train", "x", "y"), ("test", "x_test", "y_test")):
                ids[key] = api.post("/v1/users/bench/datasets", files={
                    "file": ("d.npz", _npz(x=inputs[x], y=inputs[y]))}, data={"name": key},
                ).raise_for_status().json()["id"]
            if not wait_probe_gone(svc.proc.pid):
                raise RuntimeError("the idle probe child did not exit")
            return {name: run_fleetlite(svc, api, ids, w) for name, w in WORKLOADS.items()}
    finally:
        svc.close()


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per workload and Flower client: medians and ranges, and the ratios."""
    rows = []
    for name in WORKLOADS:
        fl = [r["fleetlite"][name] for r in runs]
        for mode in FLOWER_MODES[name]:
            pairs = [(r["flower"][f"{name} / {mode}"], r["fleetlite"][name]) for r in runs
                     if r["flower"][f"{name} / {mode}"]["complete"]]
            if not pairs:
                continue  # every Flower run of it lost a round: nothing to compare
            fw = [a for a, _ in pairs]
            ratios = [a["wall_s"] / b["wall_s"] for a, b in pairs]

            def med(xs: list[dict[str, Any]], key: str) -> float:
                return float(statistics.median(x[key] for x in xs))

            rows.append({
                "workload": name, "flower_client": mode,
                "fleetlite": {k: med(fl, k) for k in fl[0]},
                "flower": {k: med(fw, k) for k in ("wall_s", "rounds_2_on_s",
                                                    "final_accuracy", "peak_mb")},
                "fleetlite_wall_s": [x["wall_s"] for x in fl],
                "flower_wall_s": [x["wall_s"] for x in fw],
                "flower_runs_complete": f"{len(fw)} of {len(runs)}",
                "ratio_wall": med(fw, "wall_s") / med(fl, "wall_s"),
                "ratio_rounds_2_on": med(fw, "rounds_2_on_s") / med(fl, "rounds_2_on_s"),
                "ratio_wall_range": [min(ratios), max(ratios)],
            })
    return rows


def print_table(rows: list[dict[str, Any]], runs: int) -> None:
    print(f"\nfleetlite beside Flower 1.42 (run_simulation, Ray, {os.cpu_count()} CPUs), "
          f"medians of {runs} alternated run(s)\n")
    head = (f"{'workload':36} {'Flower client':13} {'fleetlite s':>11} {'Flower s':>9} "
            f"{'x':>6} {'rounds 2+ x':>11} {'accuracy fl / Fl':>17} {'peak MB fl / Fl':>16}")
    print(head)
    for r in rows:
        a, b = r["fleetlite"], r["flower"]
        print(f"{r['workload']:36} {r['flower_client']:13} {a['wall_s']:11.2f} "
              f"{b['wall_s']:9.1f} {r['ratio_wall']:6.0f} {r['ratio_rounds_2_on']:11.0f} "
              f"{a['final_accuracy']:8.3f} {b['final_accuracy']:.3f} "
              f"{a['peak_mb']:8.0f} {b['peak_mb']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default=str(ROOT / ".cache/peers-venv/bin/python"),
                        help="the Python of the virtualenv that has flwr[simulation]==1.42.0")
    parser.add_argument("--runs", type=int, default=3, help="alternations of the two systems")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fleetlite-peers-") as t:
        tmp = Path(t)
        inputs = prepare(tmp)
        data = {}
        for name, w in WORKLOADS.items():
            data[name] = tmp / f"flower-{w[0]}.npz"
            flower_data(inputs, w[0], data[name])
        for i in range(args.runs):
            run: dict[str, Any] = {"flower": {}}

            def flower(run: dict[str, Any] = run, i: int = i) -> None:
                for name, w in WORKLOADS.items():
                    for mode in FLOWER_MODES[name]:
                        res = run_flower(args.peers_python, data[name], mode, w, tmp)
                        run["flower"][f"{name} / {mode}"] = res
                        print(f"  run {i + 1}: Flower {mode:9} {name}: {res['wall_s']:.1f} s, "
                              f"accuracy {res['final_accuracy']:.3f}"
                              + ("" if res["complete"] else "; a round lost every update "
                                 "(left out of the table)"), flush=True)

            if i % 2:  # alternate who goes first, so a noisy spell hits both
                flower()
            run["fleetlite"] = fleetlite_round(inputs)
            for name, res in run["fleetlite"].items():
                print(f"  run {i + 1}: fleetlite {name}: {res['wall_s']:.2f} s, accuracy "
                      f"{res['final_accuracy']:.3f}", flush=True)
            if not i % 2:
                flower()
            runs.append(run)
            write(runs)  # after every alternation: an interrupted bench keeps what it measured
    print_table(summarize(runs), len(runs))
    print(f"\nwrote {OUT}")


def write(runs: list[dict[str, Any]]) -> None:
    """bench/peers.json: the summary rows and every run's figures."""
    OUT.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "note": "a shared 2-core VM"},
        "workloads": {k: dict(zip(("devices", "per_round", "rounds"), v, strict=True))
                      for k, v in WORKLOADS.items()},
        "held_out": HELD_OUT, "batch_size": BATCH, "local_epochs": EPOCHS,
        "rows": summarize(runs), "runs": runs}, indent=2, default=float))


if __name__ == "__main__":
    main()
