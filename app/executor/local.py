"""The local executor: runner work in this process, each piece a task of a session's strand.

A job's turns go to its session's strand, so calls on the session interleave with it. A
fleet's client updates go to the strands of the clients' own sessions (every device is a
session, subject to the live cap like any other), so a round runs on every interpreter
thread at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path
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
        """Every update as a task of its client's strand, as many at once as the live cap
        leaves room for (a device loaded early would only be evicted again before its
        turn); results as they end."""
        assert self.sessions is not None, "the services set the session source at start"
        # One update per core at a time: each is CPU-bound, and more only fight over cores.
        room = min(self.sessions.room() or len(updates), os.cpu_count() or 1)
        queue = list(reversed(updates))
        pending: dict[Future[UpdateResult], tuple[ClientUpdate, int]] = {}
        try:
            while queue or pending:
                while queue and len(pending) < room:
                    update = queue.pop()
                    pending[self._submit(update, stopped)] = (update, 0)
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    update, tries = pending.pop(fut)
                    try:
                        yield fut.result()
                    except SessionEvicted:  # evicted before its turn: load it again
                        if tries >= 5:
                            raise
                        pending[self._submit(update, stopped)] = (update, tries + 1)
        finally:
            for fut in pending:  # a failed or interrupted round: let the rest wind down
                fut.cancel()

    def _submit(self, update: ClientUpdate, stopped: Callable[[], bool]) -> Future[UpdateResult]:
        assert self.sessions is not None
        live = self.sessions.live(update)
        return live.strand.submit(self._update, live, update, stopped)

    def _update(self, live: LiveSession, update: ClientUpdate,
                stopped: Callable[[], bool]) -> UpdateResult:
        """In the client's strand: the whole update, then the session counts as saved (the
        fleet keeps what matters of it)."""
        live.check_present()
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
