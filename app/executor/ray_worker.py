"""The Ray actor that runs runner work on a cluster: client updates and job epochs.

One actor holds one CPU (`num_cpus=1`) and runs one piece of work at a time; it keeps an
LRU of interpreters by session, so a client routed to it again finds its own warm, and
caches of what the work fetches from the store by key (models, checkpoints, datasets).
Only plain values cross the wire: a ClientUpdate in, an UpdateResult out; a job's epochs
stream out one at a time with their weights.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.executor.cache import Lru
from app.executor.update import Bare, ClientUpdate, Outcome, run_update
from app.runtime import ckptfile, runner
from app.runtime.datasets import read_npz
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan
from app.runtime.signatures import Signatures, numpy_dtype, read_signatures
from app.store import open_store

INTERPRETERS = 64  # warm interpreters per actor (about 5 MB each for the MLP)


@dataclass(frozen=True)
class StoreConfig:
    """How a worker opens the same blob store as the API process."""

    url: str
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


@dataclass(frozen=True)
class RemoteJob:
    """A job's epochs for a worker: the weights to start from (a checkpoint's key, its bytes
    after a failover, or neither: the model's initial weights) and the plan."""

    key: str  # the job's id: cancel() names it
    session_id: str
    model_key: str
    dataset_key: str
    plan: Plan
    start_key: str | None = None
    start: bytes | None = None


@dataclass(frozen=True)
class EpochDone:
    """One epoch of a remote job: its losses and the weights right after its last step."""

    epoch: int
    losses: list[float]
    mean_loss: float | None
    data: bytes


class UpdateWorker:
    """Decorated with ray.remote by the executor (so importing this needs no Ray)."""

    def __init__(self, store: StoreConfig, threads: int = 1) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.store = open_store(store.url, endpoint=store.endpoint, region=store.region,
                                access_key_id=store.access_key_id,
                                secret_access_key=store.secret_access_key)
        self.scratch = Path(tempfile.mkdtemp(prefix="fleetlite-ray-"))
        self.threads = threads
        self.lites = Lru[LiteSession](INTERPRETERS)
        self.blobs = Lru[bytes](8)
        self.parsed = Lru[dict[str, np.ndarray]](8)
        self.datasets = Lru[dict[str, np.ndarray]](2)
        self.signatures = Lru[Signatures](4)
        self.cancelled: set[str] = set()

    def pid(self) -> int:
        """The worker process (tests kill it)."""
        return os.getpid()

    def fetch(self, key: str) -> bytes:
        """A blob by key, cached."""
        return self.blobs.get(key, lambda: self.store.get(key))

    def read(self, key: str) -> dict[str, np.ndarray]:
        """A checkpoint's arrays by key, cached."""
        return self.parsed.get(key, lambda: ckptfile.read(self.fetch(key), self.scratch))

    def _lite(self, session_id: str, model_key: str) -> LiteSession:
        return self.lites.get(f"{session_id}|{model_key}", lambda: LiteSession(
            self.store.get(model_key), self.threads))

    def _signatures(self, model_key: str, lite: LiteSession) -> Signatures:
        return self.signatures.get(model_key, lambda: read_signatures(lite.interpreter))

    def update(self, update: ClientUpdate) -> Outcome:
        """One client update, as the local executor runs it, on this worker's interpreter."""
        return run_update(
            update, lambda: self._lite(update.session_id, update.model_key),
            lambda lite: self._signatures(update.model_key, lite),
            lambda: self.datasets.get(update.dataset_key,
                                      lambda: read_npz(self.store.get(update.dataset_key))),
            self.fetch, self.read, self.scratch, lambda: False)

    def train_job(self, job: RemoteJob) -> Iterator[EpochDone]:
        """A job's epochs from job.plan.first_epoch on, one EpochDone each (a streaming
        generator), until the last or until cancel(job.key)."""
        self.cancelled.discard(job.key)
        lite = self._lite(job.session_id, job.model_key)
        spec = self._signatures(job.model_key, lite)["train"]
        raw = read_npz(self.store.get(job.dataset_key))
        arrays = {n: np.ascontiguousarray(raw[n], dtype=numpy_dtype(t.dtype))
                  for n, t in spec.inputs.items()}
        path = self.scratch / f"job-{job.key}.ckpt"
        start = job.start if job.start is not None else (
            self.fetch(job.start_key) if job.start_key is not None else None)
        if start is not None:
            path.write_bytes(start)
            lite.restore(path)
        else:  # the model's own initial weights: a fresh interpreter
            lite = LiteSession(self.store.get(job.model_key), self.threads)
            self.lites.put(f"{job.session_id}|{job.model_key}", lite)
        for epoch in range(job.plan.first_epoch, job.plan.epochs):
            hooks = _EpochHooks(lambda: job.key in self.cancelled)
            one = replace(job.plan, first_epoch=epoch, epochs=epoch + 1)
            if not runner.run(Bare(lite), arrays, one, hooks, snapshot=lambda: None):
                return
            lite.save(path)
            yield EpochDone(epoch + 1, hooks.losses, runner.mean_loss(hooks.losses),
                            path.read_bytes())
        path.unlink(missing_ok=True)

    def cancel(self, key: str) -> None:
        """Stop a job of this worker after its step under way (runs beside it)."""
        self.cancelled.add(key)


class _EpochHooks:
    def __init__(self, stopped: Any) -> None:
        self.stopped = stopped
        self.losses: list[float] = []

    def progress(self, epoch: int, losses: list[float]) -> None:
        self.losses.extend(losses)

    def epoch_end(self, epoch: int, mean_loss: float | None, snapshot: None) -> None:
        pass
