"""The threads that drive long work (jobs, fleets) one piece each, and the live state of
every piece this process runs: what status reads and event streams answer from."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("fleetlite.workers")
ACTIVE = ("queued", "running", "paused")  # a paused fleet waits for its store, still driven


class State(Protocol):
    """What the workers need of a piece's state."""

    status: str
    cancel: threading.Event
    stop: threading.Event

    def ask_cancel(self) -> bool:
        """Set `cancel`; True when a driver has taken the piece (see WorkState.ask_cancel)."""


S = TypeVar("S", bound=State)


class Drivers(Protocol):
    """What the lifecycle needs of the threads that drive jobs or fleets."""

    def submit(self, key: str) -> Any:
        """Queue a piece by id (once)."""

    def state(self, key: str) -> Any:
        """The live state of a piece run here, or None."""

    def cancel(self, key: str) -> bool:
        """Ask a piece to stop; False when the caller must write its end."""


class Pieces(Generic[S]):
    """The live state of every piece this process drives, one per id, under one lock (a
    Condition, so that a scheduler can wait on it too)."""

    def __init__(self, make: Callable[[str], S]) -> None:
        self._make = make
        self._states: dict[str, S] = {}
        self._lock = threading.Condition()
        self.drivers = 0  # pieces handed to a thread so far (tests count them)

    def _claim(self, key: str) -> tuple[S, bool]:
        """The piece's state, and whether it is new here: a piece already queued or driven
        here is not queued again (one piece, one driver, whatever asks twice)."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                return state, False
            state = self._states[key] = self._make(key)
            self.drivers += 1
            return state, True

    def state(self, key: str) -> S | None:
        """The live state of a piece this process runs or ran."""
        return self._states.get(key)

    def cancel(self, key: str) -> bool:
        """Ask a piece to stop (after its step, or its round); True when its driver has it
        and will write its end, False when the caller must (queued, or not run here)."""
        state = self._states.get(key)
        if state is None:
            return False
        driven = state.ask_cancel()
        with self._lock:
            self._lock.notify_all()  # a waiting scheduler looks again
        return driven

    def _forget(self, key: str, state: S) -> None:
        if state.status not in ACTIVE:  # the row has the rest
            with self._lock:
                self._states.pop(key, None)


class Workers(Pieces[S]):
    """A fixed number of threads; `run(state)` drives one piece to an end state (or until
    stopped at shutdown, leaving it resumable) and records failures itself."""

    def __init__(self, name: str, workers: int, make: Callable[[str], S],
                 run: Callable[[S], None]) -> None:
        super().__init__(make)
        self._name, self._run = name, run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)

    def submit(self, key: str) -> S:
        """Queue a piece by id; it starts when a worker is free (once, see _claim)."""
        state, new = self._claim(key)
        if new:
            self._pool.submit(self._guarded, key, state)
        return state

    def shutdown(self) -> None:
        """Stop every piece at its next step, leaving it resumable, and wait for them."""
        for state in list(self._states.values()):
            state.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, key: str, state: S) -> None:
        try:
            self._run(state)
        except Exception:  # run records failures itself; this is the last resort
            log.exception("%s %s crashed", self._name, key)
        finally:
            self._forget(key, state)
