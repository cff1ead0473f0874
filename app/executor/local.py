"""The local executor: runner work in this process.

A job's turns go to its session's strand, so calls on the session interleave with it. A
fleet's client updates run on lanes: one thread per core, each with its own interpreter of
the fleet's model, taking the round's updates one after another. An update restores every
variable its device starts from and the models train by SGD (no optimizer slots), so which
interpreter runs it changes nothing in its result (the Ray workers' are others again); the
devices' sessions are rows and checkpoints, loaded like any session when someone calls them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import numpy as np

from app.executor.base import TrainingWork
from app.executor.cache import Lru
from app.executor.update import Arrays, ClientUpdate, Outcome, client_arrays, run_update
from app.runtime import ckptfile, runner
from app.runtime.datasets import read_npz
from app.runtime.interpreter import LiteSession
from app.runtime.session import Snapshot
from app.runtime.signatures import Signatures, SignatureSpec, read_signatures
from app.store import BlobStore

CLIENT_ARRAYS_BYTES = 32 << 20  # devices' gathered training examples kept across rounds


class LocalExecutor:
    """Trains on this process's interpreters: a job on its session's, a fleet's updates on
    the lanes'."""

    def __init__(self, scratch: Path, store: BlobStore, *, lanes: int | None = None,
                 interpreter_threads: int = 1) -> None:
        self.scratch = scratch
        self.store = store
        self.lanes = max(1, lanes or os.cpu_count() or 1)
        self.interpreter_threads = interpreter_threads
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="fleet-lane")
        self._lane = threading.local()  # each lane's interpreters, by model
        self._blobs = Lru[bytes](8)  # global checkpoints: every update of a round reads one
        self._parsed = Lru[Mapping[str, np.ndarray[Any, Any]]](8)
        self._datasets = Lru[Mapping[str, np.ndarray[Any, Any]]](2)
        self._models = Lru[bytes](4)
        self._signatures = Lru[Signatures](4)
        # A sync fleet's device trains the same examples every round: its arrays, gathered
        # once (py-spy found a tenth to a sixth of an update's samples in the gather).
        self._clients = Lru[Arrays](100_000, cost=lambda a: sum(v.nbytes for v in a.values()),
                                    budget=CLIENT_ARRAYS_BYTES)
        self._names = itertools.count()
        self._start_files: set[Path] = set()  # every lane's, removed at shutdown

    def train(self, work: TrainingWork, hooks: runner.Hooks[Snapshot]) -> bool:
        """Run the plan on work.live; True when every epoch ran."""
        live = work.live
        return runner.run(live, work.arrays, work.plan, hooks,
                          snapshot=lambda: live.snapshot(self.scratch),
                          call=lambda turn: live.strand.submit(turn).result())

    def run_updates(self, updates: Sequence[ClientUpdate], stopped: Callable[[], bool]
                    ) -> Iterator[Outcome]:
        """The round's updates on every lane at once, outcomes as they end. A lane takes the
        next update itself when one ends: no thread waits for another between two updates,
        and no update waits for a thread to wake up."""
        todo = deque(updates)
        lock = threading.Lock()
        results: SimpleQueue[tuple[Outcome | None, BaseException | None]] = SimpleQueue()
        closed = threading.Event()

        def lane() -> None:
            while not closed.is_set():
                with lock:
                    if not todo:
                        return
                    update = todo.popleft()
                try:
                    results.put((self.update(update, stopped), None))
                except BaseException as exc:  # noqa: BLE001 - the driver raises it
                    results.put((None, exc))
                    return

        for _ in range(min(self.lanes, len(updates))):
            self._pool.submit(lane)
        try:
            for _ in updates:
                result, error = results.get()
                if error is not None:
                    raise error
                assert result is not None
                yield result
        finally:
            closed.set()  # a failed or interrupted round: the lanes stop after their update

    def update(self, update: ClientUpdate, stopped: Callable[[], bool]) -> Outcome:
        """One client update on this lane's interpreter of the model."""
        return run_update(
            update, lambda: self._interpreter(update.model_key),
            lambda lite: self._signatures.get(update.model_key,
                                              lambda: read_signatures(lite.interpreter)),
            lambda: self.dataset(update.dataset_key), self.fetch, self.read, self.scratch,
            stopped, self._start_file, self._client_arrays)

    def _client_arrays(self, update: ClientUpdate, dataset: Mapping[str, np.ndarray[Any, Any]],
                       spec: SignatureSpec) -> Arrays:
        key = "|".join((update.dataset_key, update.model_key, *update.train_inputs,
                        str(update.flip_label), str(update.num_classes),
                        hashlib.blake2b(np.ascontiguousarray(update.indices).tobytes(),
                                        digest_size=16).hexdigest()))

        def gather() -> Arrays:
            arrays = client_arrays(update, dataset, spec)
            for value in arrays.values():
                value.flags.writeable = False  # shared by every update of the device
            return arrays

        return self._clients.get(key, gather)

    def _start_file(self, key: str) -> Path:
        # This lane's file of a global checkpoint, written once and restored by each update
        # of the round the lane runs, instead of a file written and removed an update. A
        # lane's own, so no file goes while another lane restores it; the last two kept
        # (fleets running at once take turns on the lanes).
        files: dict[str, Path] | None = getattr(self._lane, "starts", None)
        if files is None:
            files = self._lane.starts = {}
        path = files.pop(key, None)
        if path is None:
            path = self.scratch / f"start-{next(self._names)}.ckpt"
            self._start_files.add(path)
            path.write_bytes(self.fetch(key))
        files[key] = path  # the most recent last
        while len(files) > 2:
            old = files.pop(next(iter(files)))
            old.unlink(missing_ok=True)
            self._start_files.discard(old)
        return path

    def _interpreter(self, model_key: str) -> LiteSession:
        lites: Lru[LiteSession] | None = getattr(self._lane, "lites", None)
        if lites is None:
            lites = self._lane.lites = Lru[LiteSession](2)
        return lites.get(model_key, lambda: LiteSession(
            self._models.get(model_key, lambda: self.store.get(model_key)),
            self.interpreter_threads))

    def fetch(self, key: str) -> bytes:
        """A blob from the store, cached (a round's updates share its global checkpoint)."""
        return self._blobs.get(key, lambda: self.store.get(key))

    def read(self, key: str) -> Mapping[str, np.ndarray[Any, Any]]:
        """A checkpoint's arrays, cached."""
        return self._parsed.get(key, lambda: ckptfile.read(self.fetch(key), self.scratch))

    def dataset(self, key: str) -> Mapping[str, np.ndarray[Any, Any]]:
        """A dataset's arrays, cached (every client of a fleet reads the same one)."""
        return self._datasets.get(key, lambda: read_npz(self.store.get(key)))

    def shutdown(self) -> None:
        """Let the lanes go (a fleet under way was stopped by its hooks first)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for path in list(self._start_files):
            path.unlink(missing_ok=True)
