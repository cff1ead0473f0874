"""Where a per-step call's time goes: client CPU, server CPU and wall time per call.

``python -m bench.breakdown``: the MLP's and the CNN's train step at batch 32 through
tritonclient, and the MLP's through a minimal http.client request carrying the same binary
body, beside the raw interpreter; then the transport's own floor: the same bodies posted to
an ASGI app that only reads them (bench/echo.py) under the same uvicorn. On a 2-core
machine the client's CPU is the server's competitor.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import models
from app.runtime.interpreter import LiteSession
from bench.clients import batches, triton_inputs
from bench.harness import ROOT, Service, free_port


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
    raw_ms = raw_step_ms(data, batch, n)
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
        cnn_batch = batches("cnn")[0]
        cnn_id = api.post("/v1/models", files={"file": ("c.tflite", models.build_cached("cnn"))},
                          data={"name": "cnn"}).json()["id"]
        cnn_sid = api.post("/v1/users/b/sessions", json={"model_id": cnn_id}).json()["id"]
        cnn_client = httpclient.InferenceServerClient(
            url=f"127.0.0.1:{svc.port}/v1/sessions/{cnn_sid}")
        cnn_in = triton_inputs(cnn_batch)
        cnn = per_call(lambda: cnn_client.infer("train", cnn_in), pid, max(n // 20, 50))
    finally:
        svc.close()
    cnn_raw_ms = raw_step_ms(models.build_cached("cnn"), cnn_batch, 100)
    cnn_body = b"x" * sum(v.nbytes for v in cnn_batch.values())
    floors = transport_floor({"MLP-sized body": body, "CNN-sized body": cnn_body}, n)
    print(f"raw interpreter train step: mlp {raw_ms:.3f} ms ({1000 / raw_ms:.0f} steps/s), "
          f"cnn {cnn_raw_ms:.3f} ms")
    print(f"{'per call':40s} {'wall ms':>8} {'client CPU':>11} {'server CPU':>11} {'x raw':>6}")
    for name, r, base in (("mlp tritonclient binary train", triton, raw_ms),
                          ("mlp http.client binary train", bare, raw_ms),
                          ("httpx GET /healthz", health, raw_ms),
                          ("cnn tritonclient binary train", cnn, cnn_raw_ms)):
        print(f"{name:40s} {r['wall_ms']:8.3f} {r['client_cpu_ms']:11.3f} "
              f"{r['server_cpu_ms']:11.3f} {base / r['wall_ms']:6.3f}")
    for name, r in floors.items():
        print(f"{'transport only, ' + name:40s} {r['wall_ms']:8.3f} {r['client_cpu_ms']:11.3f} "
              f"{r['server_cpu_ms']:11.3f}")


def raw_step_ms(model: bytes, batch: dict[str, np.ndarray], n: int) -> float:
    """The raw interpreter's train step, warmed."""
    lite = LiteSession(model)
    for _ in range(50):
        lite.run("train", batch)
    t0 = time.perf_counter()
    for _ in range(n):
        lite.run("train", batch)
    return (time.perf_counter() - t0) / n * 1000


def transport_floor(bodies: dict[str, bytes], n: int) -> dict[str, dict[str, float]]:
    """Per-call cost of POSTing each body to bench/echo.py under the same uvicorn."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.echo:app", "--port", str(port), "--loop",
         "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                conn.close()
                time.sleep(0.1)
        out = {}
        for name, body in bodies.items():
            def post(body: bytes = body) -> None:
                conn.request("POST", "/", body=body,
                             headers={"Content-Type": "application/octet-stream"})
                conn.getresponse().read()

            out[name] = per_call(post, proc.pid, n if len(body) < 1 << 20 else max(n // 10, 50))
        return out
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
