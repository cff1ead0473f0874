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
from app.services.workers import ACTIVE

log = logging.getLogger("fleetlite.workers")
Drive = Generator[float | None, None, None]


class FairWorkers:
    """The Workers interface (submit, state, cancel, shutdown) for fleets, with round-robin
    over users. One lock guards the queues and the states; a fleet's generator is advanced
    by one worker at a time (it is in no queue while it runs)."""

    def __init__(self, workers: int, drive: Callable[[FleetState], Drive],
                 owner: Callable[[str], str]) -> None:
        self._drive, self._owner = drive, owner
        self._states: dict[str, FleetState] = {}
        self._ready: OrderedDict[str, deque[tuple[FleetState, Drive]]] = OrderedDict()
        self._parked: list[tuple[float, int, FleetState, Drive]] = []  # (due, tie, ...)
        self._tie = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self.drivers = 0  # fleets handed to the workers so far (tests count them)
        self._threads = [threading.Thread(target=self._work, name=f"fleet-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, key: str) -> FleetState:
        """Queue a fleet by id; a fleet already queued or driven here is not queued again."""
        with self._cond:
            state = self._states.get(key)
            if state is not None:
                return state
            state = self._states[key] = FleetState(key)
            self.drivers += 1
        try:
            user = self._owner(key)
        except Exception:  # noqa: BLE001 - the driver reads the row again and says why
            user = ""
        with self._cond:
            self._ready.setdefault(user, deque()).append((state, self._drive(state)))
            self._cond.notify()
        return state

    def state(self, key: str) -> FleetState | None:
        """The live state of a fleet this process runs or ran."""
        return self._states.get(key)

    def cancel(self, key: str) -> bool:
        """Ask a fleet to stop after its round; False if not run here."""
        state = self._states.get(key)
        if state is None:
            return False
        state.cancel.set()
        with self._cond:
            self._cond.notify_all()  # a parked fleet wakes to see it
        return True

    def shutdown(self) -> None:
        """Stop every fleet at its next step, leaving it resumable, and wait for them."""
        with self._cond:
            self._closing = True
            for state in self._states.values():
                state.stop.set()
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        with self._cond:
            rest = [gen for q in self._ready.values() for _, gen in q]
            rest += [gen for *_, gen in self._parked]
        for gen in rest:
            gen.close()

    def _next(self) -> tuple[FleetState, Drive] | None:
        """The next fleet to advance (round-robin over users), or None when closing."""
        with self._cond:
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
                self._cond.wait(due)

    def _queue(self, state: FleetState, gen: Drive) -> None:
        user = state.row.user_id if state.row is not None else ""
        self._ready.setdefault(user, deque()).append((state, gen))

    def _work(self) -> None:
        while (item := self._next()) is not None:
            state, gen = item
            try:
                wait = next(gen)
            except StopIteration:
                self._done(state)
                continue
            except Exception:  # drive records failures itself; this is the last resort
                log.exception("fleet %s crashed", state.fleet_id)
                self._done(state)
                continue
            with self._cond:
                if wait:
                    heapq.heappush(self._parked, (time.monotonic() + wait, next(self._tie),
                                                  state, gen))
                else:
                    self._queue(state, gen)
                self._cond.notify()

    def _done(self, state: FleetState) -> None:
        if state.status not in ACTIVE:  # the row has the rest
            with self._cond:
                self._states.pop(state.fleet_id, None)
