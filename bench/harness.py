"""Timing helpers and a service started as a subprocess, the way `make run` starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Rate:
    """Calls per second and per-call latency percentiles of one measured loop."""

    name: str
    calls: int
    seconds: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)

    @property
    def per_s(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def measure(name: str, fn: Callable[[], object], *, seconds: float = 3.0,
            warmup: int = 20) -> Rate:
    """Call fn repeatedly for about `seconds` after a warm-up; record each call's latency."""
    for _ in range(warmup):
        fn()
    lat: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        t0 = now
        fn()
        now = time.perf_counter()
        lat.append((now - t0) * 1000)
    return Rate(name, len(lat), now - start, lat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """fleetlite under uvicorn (uvloop, httptools) with a fresh SQLite file and local store."""

    def __init__(self, **env: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="fleetlite-bench-")
        d = Path(self.dir.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {**os.environ, "FLEETLITE_DATABASE_URL": f"sqlite:///{d / 'db.sqlite'}",
                   "FLEETLITE_STORE_URL": str(d / "store"), "FLEETLITE_WORK_DIR": str(d / "tmp"),
                   "FLEETLITE_LOG_LEVEL": "warning", **env}
        subprocess.run([sys.executable, "-m", "app.db.migrate"], cwd=ROOT, env=environ,
                       check=True)
        self.env = environ
        self.log = (d / "server.log").open("wb")
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port",
             str(self.port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
             "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not start; see {self.dir.name}/server.log")
            time.sleep(0.2)

    def restart(self) -> None:
        """Stop the server (SIGTERM) and start it again on the same database and store."""
        self.proc.terminate()
        self.proc.wait(60)
        self._start()

    def rss_mb(self) -> float:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()
        self.dir.cleanup()
