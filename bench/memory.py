"""The server's memory: resident size of the server and its children fresh, idle after one
fleet, before and after 50 fleets, where it goes, and an upload's validation with a cold and
a warm probe child.

python -m bench.memory [--fleets 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil
from httpx_sse import connect_sse

import models
from app.demo import digits_28
from bench.harness import Service

PROBE_IDLE_SECONDS = 5  # the bench's setting, so it sees the child go without a minute's wait


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MB (shared pages counted in each)."""
    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            total += p.memory_info().rss
    return total / 2**20


def status_mb(pid: int) -> dict[str, float]:
    """The server's own RSS split as the kernel counts it: anonymous (heaps, arenas, numpy,
    interpreters), file-backed (mapped code: TensorFlow's shared objects), shared memory."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _fleet(api: httpx.Client, spec: dict[str, Any]) -> None:
    r = api.post("/v1/users/mem/fleets", json=spec)
    r.raise_for_status()
    with connect_sse(api, "GET", f"/v1/fleets/{r.json()['id']}/events") as src:
        final = [orjson.loads(e.data) for e in src.iter_sse() if e.event == "end"][-1]
    assert final["status"] == "succeeded", final


def probe_children(pid: int) -> list[psutil.Process]:
    """The server's model-probe children (its other child filters its stderr)."""
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "app.runtime.probe" in c.cmdline():
                out.append(c)
    return out


def wait_probe_gone(pid: int, timeout: float = 120.0) -> bool:
    """Wait until the idle probe child has exited; False if it is still there at timeout."""
    deadline = time.monotonic() + timeout
    while probe_children(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def bench_memory(fleets: int = 50) -> dict[str, Any]:
    """The figures above, on a fresh server started as `make run` starts it."""
    svc = Service(FLEETLITE_PROBE_IDLE_SECONDS=str(PROBE_IDLE_SECONDS))
    out: dict[str, Any] = {"probe_idle_seconds": PROBE_IDLE_SECONDS}
    pid = svc.proc.pid
    try:
        out["fresh_mb"] = tree_rss_mb(pid)
        out["fresh_probe_children"] = len(probe_children(pid))
        out["fresh_server"] = status_mb(pid)
        with httpx.Client(base_url=svc.url, timeout=600) as api:
            mlp = models.build_cached("mlp")
            took = []
            for name in ("cold", "warm"):  # a new name: the same bytes are validated again
                t0 = time.perf_counter()
                r = api.post("/v1/models", files={"file": ("m.tflite", mlp)},
                             data={"name": f"mlp {name}"})
                took.append(time.perf_counter() - t0)
                r.raise_for_status()
                if name == "cold":
                    out["with_probe_child_mb"] = tree_rss_mb(pid)
            out["upload_cold_s"], out["upload_warm_s"] = took
            model_id = r.json()["id"]
            x, y = digits_28()
            ds = api.post("/v1/users/mem/datasets", files={"file": ("d.npz", _npz(
                x=x[:400], y=np.eye(10, dtype=np.float32)[y[:400]]))}, data={"name": "d"},
            ).raise_for_status().json()["id"]
            spec = {"model_id": model_id, "dataset_id": ds, "clients": 10,
                    "clients_per_round": 5, "rounds": 3, "batch_size": 16, "holdout": 0.2}
            _fleet(api, spec)
            out["probe_child_gone"] = wait_probe_gone(pid)
            out["idle_after_1_fleet_mb"] = tree_rss_mb(pid)
            out["after_1_fleet_server"] = status_mb(pid)
            started = time.perf_counter()
            out["by_fleet_mb"] = {1: out["idle_after_1_fleet_mb"]}
            for n in range(2, fleets + 1):
                _fleet(api, spec)
                if n % 10 == 0:  # a plateau and a leak differ in the shape, not the end
                    out["by_fleet_mb"][n] = tree_rss_mb(pid)
            out["fleets"] = fleets
            out["fleets_s"] = time.perf_counter() - started
            out["idle_after_n_fleets_mb"] = tree_rss_mb(pid)
            out["after_n_fleets_server"] = status_mb(pid)
    finally:
        svc.close()
    return out


def print_memory(m: dict[str, Any]) -> None:
    """The memory rows of the bench."""
    srv = m["fresh_server"]
    print("\nmemory: the server and its children (RSS; target idle <= 900 MB, no growth)")
    print(f"  fresh                                  {m['fresh_mb']:7.0f} MB "
          f"(probe children: {m['fresh_probe_children']}; server anon {srv['RssAnon']:.0f}, "
          f"file-backed {srv['RssFile']:.0f})")
    print(f"  with the probe child (after an upload) {m['with_probe_child_mb']:7.0f} MB")
    print(f"  idle after one fleet, child gone       {m['idle_after_1_fleet_mb']:7.0f} MB "
          f"(the child exited after {m['probe_idle_seconds']} s idle: "
          f"{'yes' if m['probe_child_gone'] else 'NO'})")
    a, b = m["after_1_fleet_server"], m["after_n_fleets_server"]
    print(f"  after {m['fleets']} fleets                        "
          f"{m['idle_after_n_fleets_mb']:7.0f} MB (growth "
          f"{m['idle_after_n_fleets_mb'] - m['idle_after_1_fleet_mb']:+.0f} MB; server anon "
          f"{a['RssAnon']:.0f} -> {b['RssAnon']:.0f}; {m['fleets_s']:.0f} s)")
    print("  by fleets run: " + ", ".join(f"{n}: {mb:.0f}" for n, mb in m["by_fleet_mb"].items()))
    print(f"  an upload's validation: cold child {m['upload_cold_s']:.2f} s, "
          f"warm child {m['upload_warm_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", type=int, default=50)
    args = parser.parse_args()
    print_memory(bench_memory(args.fleets))


if __name__ == "__main__":
    main()
