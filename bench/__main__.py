"""``make bench``: the service beside the raw interpreter and tf.keras, in one run.

Prints a table of steps/s with each service figure as a ratio to the raw interpreter
measured in the same run, checks the targets, and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

import models
from app.runtime.interpreter import LiteSession
from bench import convert as convert_bench
from bench import fleet_record as fleet_record_bench
from bench import fleets as fleets_bench
from bench import jobs as jobs_bench
from bench import loops
from bench import memory as memory_bench
from bench import status as status_bench
from bench import uploads as uploads_bench
from bench.clients import BATCH, batches, client_worker, infer_inputs, triton_inputs
from bench.harness import Rate, Service, measure

OUT = Path(__file__).resolve().parent / "results.json"


def bench_raw(name: str, data: bytes, seconds: float) -> dict[str, Rate]:
    lite = LiteSession(data)
    b = batches(name)[0]
    inf = infer_inputs(name, b)
    return {
        "train": measure("raw interpreter train", lambda: lite.run("train", b), seconds=seconds),
        "infer": measure("raw interpreter infer", lambda: lite.run("infer", inf), seconds=seconds),
    }


def bench_keras(seconds: float) -> dict[str, Rate]:
    """The same MLP in tf.keras: fit over a dataset and train_on_batch."""
    import tensorflow as tf

    keras = tf.keras
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    b = batches("mlp")[0]
    out = {"train_on_batch": measure("tf.keras train_on_batch",
                                     lambda: model.train_on_batch(b["x"], b["y"]),
                                     seconds=seconds)}
    steps = 400
    ds = tf.data.Dataset.from_tensors((b["x"], b["y"])).repeat()
    model.fit(ds, steps_per_epoch=50, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    out["fit"] = Rate("tf.keras fit", steps, time.perf_counter() - t0)
    return out


def create_session(api: httpx.Client, model_id: str, user: str = "bench") -> str:
    r = api.post(f"/v1/users/{user}/sessions", json={"model_id": model_id})
    r.raise_for_status()
    return str(r.json()["id"])


def bench_service(svc: Service, name: str, data: bytes, seconds: float) -> dict[str, Any]:
    import tritonclient.http as httpclient

    out: dict[str, Any] = {}
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        model_id = api.post("/v1/models", files={"file": (f"{name}.tflite", data)},
                            data={"name": name}).raise_for_status().json()["id"]
        b = batches(name)[0]
        inf = infer_inputs(name, b)
        sid = create_session(api, model_id)
        train_body = orjson.dumps({"inputs": b}, option=orjson.OPT_SERIALIZE_NUMPY)
        infer_body = orjson.dumps({"inputs": inf}, option=orjson.OPT_SERIALIZE_NUMPY)
        hdr = {"content-type": "application/json"}
        out["json_train"] = measure("service JSON train (httpx)", lambda: api.post(
            f"/v1/sessions/{sid}/train", content=train_body, headers=hdr).raise_for_status(),
            seconds=seconds)
        out["json_infer"] = measure("service JSON infer (httpx)", lambda: api.post(
            f"/v1/sessions/{sid}/infer", content=infer_body, headers=hdr).raise_for_status(),
            seconds=seconds)
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{svc.port}/v1/sessions/{sid}")
        tin, iin = triton_inputs(b), triton_inputs(inf)
        out["binary_train"] = measure("service OIP binary train (tritonclient)",
                                      lambda: client.infer("train", tin), seconds=seconds)
        out["binary_infer"] = measure("service OIP binary infer (tritonclient)",
                                      lambda: client.infer("infer", iin), seconds=seconds)
        if name == "mlp":  # several steps per call: k batches in one body
            for k in (8, 32):
                stacked = {n: np.concatenate([b[n]] * k) for n in b}
                tk = triton_inputs(stacked)

                def call(tk: list[Any] = tk, k: int = k) -> object:
                    return client.infer("train", tk, parameters={"batches": k})

                rate = measure(f"service OIP binary train, {k} batches a call", call,
                               seconds=seconds)
                # steps, not calls: each call runs k of them
                out[f"binary_train_k{k}"] = Rate(rate.name, rate.calls * k, rate.seconds,
                                                 [ms / k for ms in rate.latencies_ms])
        out["model_id"] = model_id
    return out


def check_infer_equal(svc: Service, name: str, data: bytes, model_id: str) -> bool:
    """Train a session and a raw interpreter on the same batches: infer must match exactly."""
    import tritonclient.http as httpclient

    lite = LiteSession(data)
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        sid = create_session(api, model_id, "equality")
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{svc.port}/v1/sessions/{sid}")
        for b in batches(name, 5, seed=7):
            lite.run("train", b)
            client.infer("train", triton_inputs(b))
        probe = infer_inputs(name, batches(name, 1, seed=8)[0])
        raw = lite.run("infer", probe)["output"]
        binary = client.infer("infer", triton_inputs(probe)).as_numpy("output")
        r = api.post(f"/v1/sessions/{sid}/infer", content=orjson.dumps(
            {"inputs": probe}, option=orjson.OPT_SERIALIZE_NUMPY),
            headers={"content-type": "application/json"})
        js = np.asarray(r.raise_for_status().json()["outputs"]["output"], dtype=np.float32)
    return bool(np.array_equal(raw, binary) and np.array_equal(raw, js))


def bench_parallel(svc: Service, name: str, model_id: str, seconds: float) -> dict[str, float]:
    """Steps/s of one session driven by one client process, and of two at once."""
    ctx = mp.get_context("spawn")
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        sids = [create_session(api, model_id, f"par{i}") for i in range(2)]
    out = {}
    for n in (1, 2):
        q = ctx.Queue()
        start_at = time.time() + 3.0  # the spawned clients import numpy and tritonclient
        procs = [ctx.Process(target=client_worker, args=(svc.port, sids[i], name, seconds,
                                                          start_at, q)) for i in range(n)]
        for p in procs:
            p.start()
        rates = [q.get(timeout=seconds + 120) for _ in procs]
        for p in procs:
            p.join()
        out[f"{n}_sessions_steps_per_s"] = float(sum(rates))
    out["speedup"] = out["2_sessions_steps_per_s"] / out["1_sessions_steps_per_s"]
    return out


def bench_memory(svc: Service, model_id: str, n: int = 50) -> float:
    """Resident MB added per live session."""
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        sid = create_session(api, model_id, "mem0")
        body = orjson.dumps({"inputs": batches("mlp")[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
        api.post(f"/v1/sessions/{sid}/train", content=body)
        before = svc.rss_mb()
        for i in range(n):
            s = create_session(api, model_id, f"mem{i % 5}")
            api.post(f"/v1/sessions/{s}/train", content=body,
                     headers={"content-type": "application/json"}).raise_for_status()
        return (svc.rss_mb() - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description="fleetlite benchmarks")
    parser.add_argument("--seconds", type=float, default=4.0, help="time per measured loop")
    parser.add_argument("--quick", action="store_true", help="1 s loops, for a smoke run")
    parser.add_argument("--sessions", type=int, default=10_000,
                        help="sessions for the eviction benchmark (200 live); 0 skips it")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    fleet_size = min(args.sessions, 1000) if args.quick else args.sessions
    mlp, cnn = models.build_cached("mlp"), models.build_cached("cnn")
    results: dict[str, Any] = {"machine": {
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}}
    rows: list[tuple[str, str, Rate | None, float | None, str]] = []

    raw = bench_raw("mlp", mlp, seconds)
    keras = bench_keras(seconds)
    raw_cnn = bench_raw("cnn", cnn, seconds)
    svc = Service()
    try:
        s_mlp = bench_service(svc, "mlp", mlp, seconds)
        s_cnn = bench_service(svc, "cnn", cnn, seconds)
        equal = (check_infer_equal(svc, "mlp", mlp, s_mlp["model_id"])
                 and check_infer_equal(svc, "cnn", cnn, s_cnn["model_id"]))
        par = bench_parallel(svc, "cnn", s_cnn["model_id"], max(seconds, 3.0))
        mem = bench_memory(svc, s_mlp["model_id"])
        jobs = jobs_bench.bench_jobs(svc, mlp, cnn, s_mlp["model_id"], s_cnn["model_id"],
                                     quick=args.quick)
        fleets = fleets_bench.bench_fleets(svc, mlp, s_mlp["model_id"])
        status = status_bench.bench_status(svc, s_mlp["model_id"])
        uploads = uploads_bench.bench_uploads(svc)
    finally:
        svc.close()
    server_memory = memory_bench.bench_memory()  # a server of its own
    fl = loops.live_cap(models.build_cached("head"), fleet_size, 200) if fleet_size else None

    def row(model: str, rate: Rate, base: Rate | None) -> None:
        rows.append((model, rate.name, rate, rate.per_s / base.per_s if base else None, ""))

    for k in ("train", "infer"):
        row("mlp", raw[k], None)
    for k in ("binary_train", "binary_train_k8", "binary_train_k32", "json_train"):
        row("mlp", s_mlp[k], raw["train"])
    for k in ("binary_infer", "json_infer"):
        row("mlp", s_mlp[k], raw["infer"])
    row("mlp", keras["fit"], raw["train"])
    row("mlp", keras["train_on_batch"], raw["train"])
    row("cnn", raw_cnn["train"], None)
    for k in ("binary_train", "json_train"):
        row("cnn", s_cnn[k], raw_cnn["train"])

    def ratio(service: Rate, base: Rate) -> float:
        return service.per_s / base.per_s

    job = jobs["ratio"]
    targets = {
        "mlp binary OIP train >= 0.28 x raw": ratio(s_mlp["binary_train"], raw["train"]) >= 0.28,
        "mlp 32 batches a call >= 0.55 x raw":
            ratio(s_mlp["binary_train_k32"], raw["train"]) >= 0.55,
        "mlp JSON train >= 0.08 x raw": ratio(s_mlp["json_train"], raw["train"]) >= 0.08,
        "cnn service train >= 0.90 x raw": ratio(s_cnn["binary_train"], raw_cnn["train"]) >= 0.90,
        "cnn two sessions from two clients >= 1.7 x one": par["speedup"] >= 1.7,
        "service infer equals the raw interpreter exactly": equal,
        "mlp one job, polled every 250 ms, >= 0.95 x raw loop with a save an epoch":
            job["mlp_one_job_polled"] >= 0.95,
        "mlp one job >= 0.90 x raw loop (512-step epochs)":
            job["mlp_one_job_long_epochs"] >= 0.90,
        "cnn one job >= 0.90 x raw loop": job["cnn_one_job"] >= 0.90,
        "mlp two jobs at once >= 1.7 x one job": job["mlp_two_jobs"] >= 1.7,
        "cnn two jobs at once >= 1.7 x one job": job["cnn_two_jobs"] >= 1.7,
        "a running job's status read < 0.5 ms of server CPU":
            status["job"]["server_cpu_ms"] < 0.5,
        "a running fleet's status read < 0.5 ms of server CPU":
            status["fleet"]["server_cpu_ms"] < 0.5,
        "fleet client updates >= 1.5 x the plain loop (small clients)":
            fleets["small clients"]["ratio"] >= 1.5,
        "fleet client updates >= 1.5 x the plain loop (large clients)":
            fleets["large clients"]["ratio"] >= 1.5,
    }
    print(f"\nfleetlite bench — batch {BATCH}, {os.cpu_count()} CPUs, {seconds:g} s per loop\n")
    print(f"{'model':5} {'what':42} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x raw':>7}")
    for model, what, rate, ratio, _ in rows:
        assert rate is not None
        print(f"{model:5} {what:42} {rate.per_s:9.1f} {rate.pct(50):8.3f} {rate.pct(99):8.3f} "
              f"{'' if ratio is None else f'{ratio:7.3f}'}")
    print(f"\ncnn binary train, 1 session / 1 client: {par['1_sessions_steps_per_s']:.1f} steps/s;"
          f" 2 sessions / 2 clients: {par['2_sessions_steps_per_s']:.1f} steps/s "
          f"({par['speedup']:.2f}x)")
    print(f"resident memory per live MLP session: {mem:.2f} MB")
    jobs_bench.print_jobs(jobs)
    fleets_bench.print_fleets(fleets)
    status_bench.print_status(status)
    uploads_bench.print_uploads(uploads)
    memory_bench.print_memory(server_memory)
    results["convert"] = convert_bench.bench_convert()  # no server: the child and two loops
    convert_bench.print_convert(results["convert"])
    results["fleet_record"] = fleet_record_bench.bench_fleet_record()  # servers of its own
    fleet_record_bench.print_fleet_record(results["fleet_record"])
    if fl:
        print(f"\nfleet: {fl['sessions']} sessions, {fl['cap']} live: created+trained "
              f"{fl['create_and_train_per_s']:.0f}/s; call on an evicted session p50 "
              f"{fl['restore_p50_ms']:.2f} ms p99 {fl['restore_p99_ms']:.2f} ms; on a live one "
              f"p50 {fl['live_p50_ms']:.2f} ms p99 {fl['live_p99_ms']:.2f} ms; RSS "
              f"{fl['rss_base_mb']:.0f} -> {fl['rss_after_mb']:.0f} MB")
    print()
    for t, ok in targets.items():
        print(f"  [{'PASS' if ok else 'MISS'}] {t}")
    results["rows"] = [{"model": m, "what": w, "steps_per_s": r.per_s, "p50_ms": r.pct(50),
                        "p99_ms": r.pct(99), "ratio_to_raw": x} for m, w, r, x, _ in rows if r]
    results["parallel_cnn"] = par
    results["memory_mb_per_session"] = mem
    results["jobs"] = jobs
    results["fleets"] = fleets
    results["status_reads"] = status
    results["uploads"] = uploads
    results["server_memory"] = server_memory
    results["live_cap"] = fl
    results["targets"] = targets
    OUT.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
