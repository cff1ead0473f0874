"""The local executor: runner work in this process, each piece a task of a session's strand.

A job's turns go to its session's strand, so calls on the session interleave with it. A
fleet's client updates go to the strands of the clients' own sessions (every device is a
session, subject to the live cap like any other), so a round runs on every interpreter
thread at once.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Protocol

import numpy as np

from app.executor.base import TrainingWork, client_arrays, holdout_correct
from app.executor.cache import Lru
from app.runtime import ckptfile, runner
from app.runtime.client_update import ClientUpdate, UpdateResult, start_weights, train
from app.runtime.datasets import read_npz
from app.runtime.session import LiveSession, SessionEvicted, Snapshot
from app.store import BlobStore


class SessionSource(Protocol):
    """Where a client update finds its device's live session (services.bootstrap)."""

    def live(self, update: ClientUpdate) -> LiveSession: ...

    def room(self) -> int:
        """How many devices' sessions may be in memory for a round (0: no limit)."""


class LocalExecutor:
    """Trains on this process's interpreters: the sessions' own."""

    def __init__(self, scratch: Path, store: BlobStore) -> None:
        self.scratch = scratch
        self.store = store
        self.sessions: SessionSource | None = None  # set by the services at start
        self._blobs = Lru[bytes](8)  # global checkpoints: every update of a round reads one
        self._parsed = Lru[Mapping[str, np.ndarray[Any, Any]]](8)
        self._datasets = Lru[Mapping[str, np.ndarray[Any, Any]]](2)

    def train(self, work: TrainingWork, hooks: runner.Hooks[Snapshot]) -> bool:
        """Run the plan on work.live; True when every epoch ran."""
        live = work.live
        return runner.run(live, work.arrays, work.plan, hooks,
                          snapshot=lambda: live.snapshot(self.scratch),
                          call=lambda turn: live.strand.submit(turn).result())

    def run_updates(self, updates: Sequence[ClientUpdate], stopped: Callable[[], bool]
                    ) -> Iterator[UpdateResult]:
        """Every update as a task of its client's strand, one per core at a time (each is
        CPU-bound; more only fight over cores, and a device loaded early would be evicted
        again before its turn); results as they end.

        The thread that finishes an update starts the next one itself, so a core never
        waits for this (driver) thread to wake up between two updates."""
        assert self.sessions is not None, "the services set the session source at start"
        room = min(self.sessions.room() or len(updates), os.cpu_count() or 1)
        lanes = _Lanes(self, updates, stopped)
        for _ in range(room):
            lanes.start_next()
        try:
            for _ in updates:
                result, error = lanes.results.get()
                if error is not None:
                    raise error
                assert result is not None
                yield result
        finally:
            lanes.close()  # a failed or interrupted round: let the rest wind down

    def submit(self, update: ClientUpdate, stopped: Callable[[], bool]) -> Future[UpdateResult]:
        assert self.sessions is not None
        live = self.sessions.live(update)
        return live.strand.submit(self._update, live, update, stopped)

    def _update(self, live: LiveSession, update: ClientUpdate,
                stopped: Callable[[], bool]) -> UpdateResult:
        """In the client's strand: the whole update, then the session counts as saved (the
        fleet keeps what matters of it)."""
        live.check_present()
        live.fleet_owned = True  # its rows are written when the round commits, not before
        start = start_weights(update, self.fetch, self.read, self.scratch)
        dataset = self.dataset(update.dataset_key)
        arrays = client_arrays(update, dataset, live.signatures["train"])
        result = train(live, live.lite.restore, live.lite.save, update, start, arrays,
                       self.scratch, stopped)
        correct = holdout_correct(update, dataset, lambda x: live.lite.run("infer", x),
                                  live.signatures["infer"])
        live.saved_steps = live.steps  # nothing to autosave: its weights are the fleet's
        return replace(result, correct=correct)

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
        """Nothing to release: the threads are the session pool's."""


class _Lanes:
    """A round's updates, started by whichever thread finished the one before."""

    def __init__(self, executor: LocalExecutor, updates: Sequence[ClientUpdate],
                 stopped: Callable[[], bool]) -> None:
        self.executor, self.stopped = executor, stopped
        self.queue = deque((u, 0) for u in updates)
        self.results: SimpleQueue[tuple[UpdateResult | None, BaseException | None]] = (
            SimpleQueue())
        self.pending: set[Future[UpdateResult]] = set()
        self.lock = threading.Lock()
        self.closed = False

    def start_next(self) -> None:
        with self.lock:
            if self.closed or not self.queue:
                return
            update, tries = self.queue.popleft()
        self._launch(update, tries)

    def _launch(self, update: ClientUpdate, tries: int) -> None:
        try:
            fut = self.executor.submit(update, self.stopped)
        except BaseException as exc:  # loading its session failed: the round fails
            self.results.put((None, exc))
            return
        with self.lock:
            self.pending.add(fut)
        fut.add_done_callback(lambda f: self._finished(f, update, tries))

    def _finished(self, fut: Future[UpdateResult], update: ClientUpdate, tries: int) -> None:
        with self.lock:
            self.pending.discard(fut)
        if fut.cancelled():
            return
        error = fut.exception()
        if isinstance(error, SessionEvicted) and tries < 5:  # evicted before its turn
            self._launch(update, tries + 1)
            return
        self.results.put((fut.result() if error is None else None, error))
        if error is None:
            self.start_next()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            pending, self.pending = self.pending, set()
        for fut in pending:
            fut.cancel()
