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


S = TypeVar("S", bound=State)


class Drivers(Protocol):
    """What the lifecycle needs of the threads that drive jobs or fleets."""

    def submit(self, key: str) -> Any:
        """Queue a piece by id (once)."""

    def state(self, key: str) -> Any:
        """The live state of a piece run here, or None."""

    def cancel(self, key: str) -> bool:
        """Ask a piece to stop; False if not run here."""


class Workers(Generic[S]):
    """A fixed number of threads; `run(state)` drives one piece to an end state (or until
    stopped at shutdown, leaving it resumable) and records failures itself."""

    def __init__(self, name: str, workers: int, make: Callable[[str], S],
                 run: Callable[[S], None]) -> None:
        self._name, self._make, self._run = name, make, run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._states: dict[str, S] = {}
        self._lock = threading.Lock()
        self.drivers = 0  # pieces handed to a thread so far (tests count them)

    def submit(self, key: str) -> S:
        """Queue a piece by id; it starts when a worker is free. A piece already queued or
        driven here is not queued again: one piece, one driver, whatever calls this twice."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                return state
            state = self._states[key] = self._make(key)
        self.drivers += 1
        self._pool.submit(self._guarded, key, state)
        return state

    def state(self, key: str) -> S | None:
        """The live state of a piece this process runs or ran."""
        return self._states.get(key)

    def cancel(self, key: str) -> bool:
        """Ask a piece to stop (after its step, or its round); False if not run here."""
        state = self._states.get(key)
        if state is None:
            return False
        state.cancel.set()
        return True

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
            if state.status not in ACTIVE:  # the row has the rest
                with self._lock:
                    self._states.pop(key, None)
