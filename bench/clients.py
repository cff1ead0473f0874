"""Inputs and client loops shared by the benchmark and its spawned client processes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

BATCH = 32


def triton_inputs(arrays: dict[str, np.ndarray]) -> list[Any]:
    import tritonclient.http as httpclient

    out = []
    for k, v in arrays.items():
        t = httpclient.InferInput(k, list(v.shape), "FP32")
        t.set_data_from_numpy(v, binary_data=True)
        out.append(t)
    return out


def infer_inputs(name: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x": batch["x"]} if name == "mlp" else {"image": batch["image"]}


def batches(name: str, n: int = 1, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Deterministic batches of train inputs for a model."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if name == "mlp":
            out.append({"x": rng.random((BATCH, 28, 28), dtype=np.float32),
                        "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]})
        else:
            out.append({"image": rng.random((BATCH, 64, 64, 3), dtype=np.float32),
                        "label": np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]})
    return out


def client_worker(port: int, sid: str, name: str, seconds: float, start_at: float,
                   result: Any) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}/v1/sessions/{sid}")
    tin = triton_inputs(batches(name)[0])
    client.infer("train", tin)
    while time.time() < start_at:
        time.sleep(0.001)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        client.infer("train", tin)
        n += 1
    result.put(n / (time.perf_counter() - t0))
