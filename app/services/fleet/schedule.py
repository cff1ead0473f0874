"""Fleets share the fleet workers fairly: a fleet is driven one round at a time, and the
workers take the next round from the users in turn (each user's own fleets in turn too), so
a one-round fleet posted behind another user's 100,000-round one starts at the next round's
end instead of after it. A fleet's results do not depend on this: its rounds are the same
whichever thread runs them and whatever runs between them.

A fleet's driver is a generator (run.drive) that yields after each round: None when it can
go on at once, or a number of seconds to wait (a paused fleet polling its store)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator

from app.services.progress import FleetState
from app.services.workers import Pieces

log = logging.getLogger("fleetlite.workers")
Drive = Generator[float | None, None, None]


class FairWorkers(Pieces[FleetState]):
    """The Workers interface (submit, state, cancel, shutdown) for fleets, with round-robin
    over users. One lock guards the queues and the states; a fleet's generator is advanced
    by one worker at a time (it is in no queue while it runs)."""

    def __init__(self, workers: int, drive: Callable[[FleetState], Drive],
                 owner: Callable[[str], str]) -> None:
        super().__init__(FleetState)
        self._drive, self._owner = drive, owner
        self._ready: OrderedDict[str, deque[tuple[FleetState, Drive]]] = OrderedDict()
        self._parked: list[tuple[float, int, FleetState, Drive]] = []  # (due, tie, ...)
        self._tie = itertools.count()
        self._closing = False
        self._threads = [threading.Thread(target=self._work, name=f"fleet-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, key: str) -> FleetState:
        """Queue a fleet by id (once, see Pieces._claim), behind its user's other fleets."""
        state, new = self._claim(key)
        if not new:
            return state
        try:
            user = self._owner(key)
        except Exception:  # noqa: BLE001 - the driver reads the row again and says why
            user = ""
        with self._lock:
            self._ready.setdefault(user, deque()).append((state, self._drive(state)))
            self._lock.notify()
        return state

    def shutdown(self) -> None:
        """Stop every fleet at its next step, leaving it resumable, and wait for them."""
        with self._lock:
            self._closing = True
            for state in self._states.values():
                state.stop.set()
            self._lock.notify_all()
        for t in self._threads:
            t.join()
        with self._lock:
            rest = [gen for q in self._ready.values() for _, gen in q]
            rest += [gen for *_, gen in self._parked]
        for gen in rest:
            try:
                gen.close()
            except Exception:  # noqa: BLE001 - one fleet's close must not stop the others'
                log.exception("closing a fleet at shutdown")

    def _next(self) -> tuple[FleetState, Drive] | None:
        """The next fleet to advance (round-robin over users), or None when closing."""
        with self._lock:
            while True:
                if self._closing:
                    return None
                now = time.monotonic()
                while self._parked and (self._parked[0][0] <= now
                                        or self._parked[0][2].cancel.is_set()):
                    _, _, state, gen = heapq.heappop(self._parked)
                    self._queue(state, gen)
                for user in list(self._ready):
                    queue = self._ready.pop(user)
                    item = queue.popleft()
                    if queue:
                        self._ready[user] = queue  # the user goes to the back of the line
                    return item
                due = self._parked[0][0] - now if self._parked else None
                self._lock.wait(due)

    def _queue(self, state: FleetState, gen: Drive) -> None:
        user = state.row.user_id if state.row is not None else ""
        self._ready.setdefault(user, deque()).append((state, gen))

    def _work(self) -> None:
        while (item := self._next()) is not None:
            state, gen = item
            try:
                wait = next(gen)
            except StopIteration:
                self._forget(state.fleet_id, state)
                continue
            except Exception:  # drive records failures itself; this is the last resort
                log.exception("fleet %s crashed", state.fleet_id)
                self._forget(state.fleet_id, state)
                continue
            with self._lock:
                if wait:
                    heapq.heappush(self._parked, (time.monotonic() + wait, next(self._tie),
                                                  state, gen))
                else:
                    self._queue(state, gen)
                self._lock.notify()
