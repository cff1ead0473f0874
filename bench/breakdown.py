"""Where a per-step call's time goes: client CPU, server CPU and wall time per call.

``python -m bench.breakdown``: the MLP's train step at batch 32 through tritonclient and
through a minimal http.client request carrying the same binary body, beside the raw
interpreter. On a 2-core machine the client's CPU is the server's competitor.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

import numpy as np

import models
from app.runtime.interpreter import LiteSession
from bench.clients import batches, triton_inputs
from bench.harness import Service


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_call(fn, pid: int, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Wall, client CPU and server CPU per call, in ms."""
    for _ in range(50):
        fn()
    c0, s0, w0 = time.process_time(), cpu_seconds(pid), time.perf_counter()
    for _ in range(n):
        fn()
    w, c, s = time.perf_counter() - w0, time.process_time() - c0, cpu_seconds(pid) - s0
    return {"wall_ms": w / n * 1000, "client_cpu_ms": c / n * 1000,
            "server_cpu_ms": s / n * 1000}


def main(n: int = 3000) -> None:
    """Print the breakdown table."""
    import httpx
    import tritonclient.http as httpclient

    data = models.build_cached("mlp")
    batch = batches("mlp")[0]
    lite = LiteSession(data)
    for _ in range(200):
        lite.run("train", batch)
    t0 = time.perf_counter()
    for _ in range(n):
        lite.run("train", batch)
    raw_ms = (time.perf_counter() - t0) / n * 1000
    svc = Service()
    try:
        api = httpx.Client(base_url=svc.url, timeout=60)
        model_id = api.post("/v1/models", files={"file": ("m.tflite", data)},
                            data={"name": "mlp"}).json()["id"]
        sid = api.post("/v1/users/b/sessions", json={"model_id": model_id}).json()["id"]
        pid = svc.proc.pid
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{svc.port}/v1/sessions/{sid}")
        tin = triton_inputs(batch)
        triton = per_call(lambda: client.infer("train", tin), pid, n)
        header = json.dumps({"inputs": [
            {"name": k, "shape": list(v.shape), "datatype": "FP32",
             "parameters": {"binary_data_size": v.nbytes}} for k, v in batch.items()],
            "outputs": [{"name": "loss", "parameters": {"binary_data": True}}]}).encode()
        body = header + b"".join(np.ascontiguousarray(v).tobytes() for v in batch.values())
        conn = http.client.HTTPConnection("127.0.0.1", svc.port)
        path = f"/v1/sessions/{sid}/v2/models/train/infer"
        hdrs = {"Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream"}

        def minimal() -> None:
            conn.request("POST", path, body=body, headers=hdrs)
            conn.getresponse().read()

        bare = per_call(minimal, pid, n)
        health = per_call(lambda: api.get("/healthz"), pid, n)
    finally:
        svc.close()
    print(f"raw interpreter train step: {raw_ms:.3f} ms ({1000 / raw_ms:.0f} steps/s)")
    print(f"{'per call':34s} {'wall ms':>8} {'client CPU':>11} {'server CPU':>11} {'x raw':>6}")
    for name, r in (("tritonclient binary train", triton), ("http.client binary train", bare),
                    ("httpx GET /healthz (floor)", health)):
        print(f"{name:34s} {r['wall_ms']:8.3f} {r['client_cpu_ms']:11.3f} "
              f"{r['server_cpu_ms']:11.3f} {raw_ms / r['wall_ms']:6.3f}")


if __name__ == "__main__":
    main()
