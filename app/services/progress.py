"""Live progress of long work in this process, and the notifications event streams wait on.

A state is written by the one thread that drives its work (a job's worker) and read by
any thread; `touch()` marks a change and wakes the event streams waiting for one, so a
stream costs nothing while nothing happens (no database poll per subscriber).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any


class Progress:
    """A version number that moves on every change, and the coroutines waiting for one."""

    def __init__(self) -> None:
        self.version = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._lock = threading.Lock()

    def touch(self) -> None:
        """Mark a change (from any thread) and wake every waiting event stream."""
        with self._lock:
            self.version += 1
            waiters, self._waiters = self._waiters, set()
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)

    async def wait_change(self, seen: int, *, timeout: float,
                          also: asyncio.Event | None = None) -> None:
        """Return once the version is no longer `seen`, `also` is set, or timeout passes."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._lock:
            if self.version != seen:
                return
            self._waiters.add(entry)
        waits: list[asyncio.Future[Any]] = [fut]
        if also is not None:
            waits.append(asyncio.ensure_future(also.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            with self._lock:
                self._waiters.discard(entry)
            for w in waits[1:]:
                w.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(eq=False, kw_only=True)
class WorkState(Progress):
    """Long work this process runs (a job, a fleet): written by the one thread that drives
    it, read anywhere. `row` is its row as loaded when it started, so reads of running work
    need no database."""

    status: str = "queued"
    error: str | None = None
    row: Any = None
    cancel: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    taken: bool = False  # a driver has taken it from the queue: its end is the driver's
    _gate: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        Progress.__init__(self)

    def take(self) -> bool:
        """The driver takes the work from the queue; False when a cancel came first (the
        canceller then writes the end: one writer, whichever comes first)."""
        with self._gate:
            if self.cancel.is_set():
                return False
            self.taken = True
            return True

    def ask_cancel(self) -> bool:
        """Ask the work to end "cancelled"; True when a driver has taken it (the driver ends
        it after its step or round), False when it still waits (the caller ends it now)."""
        with self._gate:
            self.cancel.set()
            return self.taken

    def interrupted(self) -> bool:
        """Cancel or stop asked: the work ends after the step (or round) under way."""
        return self.cancel.is_set() or self.stop.is_set()


@dataclass(eq=False)
class JobState(WorkState):
    """A job: its progress in steps and epochs, its epochs' losses and checkpoints."""

    job_id: str
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    epoch_loss: list[float | None] = field(default_factory=list)  # None: not finite
    checkpoint_ids: list[str] = field(default_factory=list)


@dataclass(eq=False)
class FleetState(WorkState):
    """A fleet: the round under way and its updates."""

    fleet_id: str
    round: int = 0
    rounds: int = 0
    updates_done: int = 0
    updates_in_round: int = 0
