"""What a status read costs the server: CPU per GET of a running job and of a running fleet.

The reads come from another process while the work runs; the server's CPU is read per
thread from /proc, in a window with reads and one without, so the training threads (busy
in both) cancel out and what is left is the reads' own cost.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import Service
from bench.loops import dataset

WINDOW_S = 2.0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended meanwhile
        out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _window(pid: int, work: Any) -> tuple[dict[str, float], float, int]:
    before, t0 = thread_cpu(pid), time.perf_counter()
    n = work()
    after, t1 = thread_cpu(pid), time.perf_counter()
    return {k: v - before.get(k, 0.0) for k, v in after.items()}, t1 - t0, n


def read_cost_ms(svc: Service, api: httpx.Client, path: str) -> dict[str, float]:
    """Server CPU ms per GET of `path` (the work behind it keeps running meanwhile)."""
    pid = svc.proc.pid

    def idle() -> int:
        time.sleep(WINDOW_S)
        return 0

    def reads() -> int:
        n, deadline = 0, time.perf_counter() + WINDOW_S
        while time.perf_counter() < deadline:
            api.get(path).raise_for_status()
            n += 1
        return n

    quiet, quiet_s, _ = _window(pid, idle)
    busy, busy_s, n = _window(pid, reads)
    extra = sum(max(0.0, busy.get(t, 0.0) - quiet.get(t, 0.0) * busy_s / quiet_s)
                for t in busy)
    t0 = time.perf_counter()
    for _ in range(50):
        api.get(path).raise_for_status()
    return {"server_cpu_ms": 1000 * extra / n, "reads": n,
            "client_latency_ms": (time.perf_counter() - t0) * 1000 / 50}


def bench_status(svc: Service, model_id: str) -> dict[str, Any]:
    """A long job and a long fleet, each read back to back for a window."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=svc.url, timeout=120) as api:
        buf = io.BytesIO()
        np.savez(buf, **dataset(16384))
        ds = api.post("/v1/users/status/datasets", files={"file": ("d.npz", buf.getvalue())},
                      data={"name": "status"}).raise_for_status().json()["id"]
        sid = api.post("/v1/users/status/sessions", json={"model_id": model_id}
                       ).raise_for_status().json()["id"]
        job = api.post(f"/v1/sessions/{sid}/jobs", json={
            "dataset_id": ds, "epochs": 1000, "batch_size": 32}).raise_for_status().json()
        _wait_running(api, f"/v1/jobs/{job['id']}")
        out["job"] = read_cost_ms(svc, api, f"/v1/jobs/{job['id']}")
        api.post(f"/v1/jobs/{job['id']}/cancel").raise_for_status()
        fleet = api.post("/v1/users/status/fleets", json={
            "model_id": model_id, "dataset_id": ds, "clients": 50, "clients_per_round": 10,
            "rounds": 10_000, "batch_size": 32}).raise_for_status().json()
        _wait_running(api, f"/v1/fleets/{fleet['id']}")
        out["fleet"] = read_cost_ms(svc, api, f"/v1/fleets/{fleet['id']}")
        api.post(f"/v1/fleets/{fleet['id']}/cancel").raise_for_status()
    return out


def _wait_running(api: httpx.Client, path: str) -> None:
    deadline = time.monotonic() + 60
    while api.get(path).json()["status"] != "running":
        assert time.monotonic() < deadline, f"{path} never started"
        time.sleep(0.05)
    time.sleep(0.5)  # past its start-up


def print_status(res: dict[str, Any]) -> None:
    """Server CPU per status read of running work."""
    print("\nstatus reads of running work (server CPU per GET; target < 0.5 ms)")
    for what, r in res.items():
        print(f"  GET /v1/{what}s/{{id}}: {r['server_cpu_ms']:.3f} ms server CPU "
              f"({r['reads']} reads), {r['client_latency_ms']:.2f} ms a read as the client "
              "sees it")
