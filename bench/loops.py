"""Raw training loops, job runs through the service, and sessions beyond the live cap."""

from __future__ import annotations

import io
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan
from bench.harness import Service


def dataset(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 28, 28), dtype=np.float32),
            "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]}


def raw_loop(model: bytes, data: dict[str, np.ndarray], epochs: int, batch: int, *,
             save: bool = False) -> float:
    """Steps/s of the raw interpreter looping over the same shuffled batches in-process;
    with save, it also runs the save signature after every epoch, as the blog's app does."""
    lite = LiteSession(model)
    # Not warmed: a job's session is as fresh (created by POST /sessions), and the first step
    # of both allocates the train signature's tensors.
    with tempfile.TemporaryDirectory(prefix="fleetlite-raw-") as scratch:
        path = Path(scratch) / "epoch.ckpt"
        steps, start = 0, time.perf_counter()
        for epoch in range(epochs):
            for b in Plan(epochs, batch, shuffle=True, seed=(1,), fixed_batch=False).batches(
                    data, epoch):
                lite.run("train", b)
                steps += 1
            if save:
                lite.save(path)
        return steps / (time.perf_counter() - start)


def raw_loops_in_threads(model: bytes, data: dict[str, np.ndarray], epochs: int, batch: int,
                         n: int = 2) -> float:
    """Aggregate steps/s of n raw loops on n interpreters in n threads of one process: what
    the machine itself gives n jobs (the interpreter releases the GIL while it runs)."""
    with ThreadPoolExecutor(n) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: raw_loop(model, data, epochs, batch), range(n)))
        wall = time.perf_counter() - t0
    per_epoch = -(-len(next(iter(data.values()))) // batch)  # the last partial batch too
    return n * epochs * per_epoch / wall


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_jobs(svc: Service, model_id: str, data: dict[str, np.ndarray], epochs: int, batch: int,
             n_jobs: int) -> float:
    """Aggregate train steps/s of n_jobs jobs on n sessions at once (server-side timestamps)."""
    with httpx.Client(base_url=svc.url, timeout=300) as api:
        buf = io.BytesIO()
        np.savez(buf, **data)
        ds = api.post("/v1/users/bench/datasets", files={"file": ("d.npz", buf.getvalue())},
                      data={"name": "bench"}).raise_for_status().json()["id"]
        sids = [api.post("/v1/users/bench/sessions", json={"model_id": model_id})
                .raise_for_status().json()["id"] for _ in range(n_jobs)]

        def start(sid: str) -> str:
            return str(api.post(f"/v1/sessions/{sid}/jobs", json={
                "dataset_id": ds, "epochs": epochs, "batch_size": batch, "seed": 1})
                .raise_for_status().json()["id"])

        with ThreadPoolExecutor(n_jobs) as pool:  # "at once": not one request after the other
            jobs = list(pool.map(start, sids))
        done: list[dict[str, Any]] = []
        for job in jobs:
            while True:
                j = api.get(f"/v1/jobs/{job}").json()
                if j["status"] not in ("queued", "running"):
                    break
                time.sleep(0.25)
            assert j["status"] == "succeeded", j
            done.append(j)
    steps = sum(j["progress"]["total_steps"] for j in done)
    span = max(_ts(j["finished_at"]) for j in done) - min(_ts(j["started_at"]) for j in done)
    return steps / span


def cnn_dataset(n: int = 1024) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"image": rng.random((n, 64, 64, 3), dtype=np.float32),
            "label": np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]}


CNN_EPOCHS = 4  # 32 steps an epoch (0.3-0.5 s); 4 epochs, so a job's start is amortized too


def raw_loop_cnn(model: bytes, threads: int = 1) -> float:
    """The raw loop for the compute-heavy CNN (in `threads` threads at once)."""
    if threads > 1:
        return raw_loops_in_threads(model, cnn_dataset(), CNN_EPOCHS, 32, threads)
    return raw_loop(model, cnn_dataset(), CNN_EPOCHS, 32)


def run_cnn_jobs(svc: Service, model_id: str, n_jobs: int) -> float:
    """CNN jobs at once: where two cores can show."""
    return run_jobs(svc, model_id, cnn_dataset(), CNN_EPOCHS, 32, n_jobs)


def live_cap(model: bytes, sessions: int, cap: int) -> dict[str, float]:
    """Latency of calls that find their session evicted vs live, with `sessions` > cap."""
    svc = Service(FLEETLITE_MAX_LIVE_SESSIONS=str(cap), FLEETLITE_AUTOSAVE_SECONDS="3600")
    try:
        with httpx.Client(base_url=svc.url, timeout=300,
                          limits=httpx.Limits(max_connections=8)) as api:
            model_id = api.post("/v1/models", files={"file": ("head.tflite", model)},
                                data={"name": "head"}).raise_for_status().json()["id"]
            feats = np.random.default_rng(0).random((4, 64), dtype=np.float32).tolist()
            base_rss = svc.rss_mb()

            def make(i: int) -> str:
                sid = api.post(f"/v1/users/u{i % 100}/sessions", json={"model_id": model_id}
                               ).raise_for_status().json()["id"]
                api.post(f"/v1/sessions/{sid}/train", json={
                    "inputs": {"bottleneck": feats, "label": [i % 4] * 4}}).raise_for_status()
                return sid

            t0 = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                sids = list(pool.map(make, range(sessions)))
            create_s = time.perf_counter() - t0
            rss = svc.rss_mb()

            def timed(sid: str) -> float:
                t = time.perf_counter()
                api.post(f"/v1/sessions/{sid}/infer",
                         json={"inputs": {"bottleneck": feats}}).raise_for_status()
                return (time.perf_counter() - t) * 1000

            evicted = [timed(s) for s in sids[: min(1000, sessions - cap)]]  # oldest: gone
            recent = sids[-50:]
            for s in recent:
                timed(s)
            live = [timed(s) for s in recent for _ in range(4)]
    finally:
        svc.close()
    return {"sessions": sessions, "cap": cap, "create_and_train_per_s": sessions / create_s,
            "restore_p50_ms": float(np.percentile(evicted, 50)),
            "restore_p99_ms": float(np.percentile(evicted, 99)),
            "live_p50_ms": float(np.percentile(live, 50)),
            "live_p99_ms": float(np.percentile(live, 99)),
            "rss_base_mb": base_rss, "rss_after_mb": rss}
