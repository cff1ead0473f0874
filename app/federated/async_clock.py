"""The virtual clock of an asynchronous fleet: C devices train at all times, events in order.

Each update runs as a synchronous round's does (app/federated/updates.py: download, compute,
upload; offline at its window's end; dropped when its battery would fall below the floor),
from the moment it starts. Events are ordered by (virtual time, client id). At one moment,
every update ending then is settled first (an arrival, a drop), then free places are filled:
while fewer than `concurrency` updates run, one device is drawn uniformly among the eligible
idle ones (available, battery strictly above the floor) with a generator seeded by
(seed, "async_start", i), i counting starts from 0, and starts from the current version.
With nobody eligible, the places stay free until the first moment someone is.

A server update happens at the `buffer_size`-th completed arrival since the previous one
(1 for FedAsync); version v is the model after v server updates, and an arrival's staleness
is the version when it arrives minus the version it started from. With `max_staleness` set,
a server update cuts (outcome "straggler") every running update that would now arrive more
than max_staleness versions late, at that moment. Arrivals after a server update at the same
moment belong to the next one; devices start only once every arrival of the moment is in.

Two rules have no counterpart in sync rounds, where a new round always moves time on: a
device dropped for its battery is eligible again only once charged RECHARGE_PCT points above
the floor (Android's low-battery hysteresis: BATTERY_LOW at 15 %, OKAY again at 20 %), and
with no server update within HORIZON_S of virtual time the plan says "stalled".

`state()` is plain scalars and arrays; `from_state` continues bit-identically. Not
thread-safe: one owner, the fleet's driver.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from app.federated import updates
from app.federated.async_plan import AsyncPlan, Ended, Start
from app.federated.async_state import Run, Sim
from app.federated.availability import DAY_S, HORIZON_DAYS, make_availability
from app.federated.clock import (
    BATTERY_TOLERANCE,
    INITIAL_BATTERY_PCT,
    MAX_JUMPS,
    TABLE,
    Devices,
)
from app.federated.devices import DeviceClass
from app.federated.seeds import generator

RECHARGE_PCT = 5.0
HORIZON_S = HORIZON_DAYS * DAY_S
CUT = 3  # a fourth cause beside updates.NONE, OFFLINE, BATTERY
_OUTCOME = {updates.NONE: "completed", CUT: "straggler", updates.OFFLINE: "dropped_offline",
            updates.BATTERY: "dropped_battery"}
_ROWS = ("phase_s", "phase_j", "bytes_down", "bytes_up", "charge_pct_s", "pct_per_j", "level0")
_TOKENS = itertools.count()


class AsyncClock(Devices):
    """Per-client device state and the running updates, and the planning of server updates."""

    def __init__(self, *, seed: int, classes: Sequence[DeviceClass], class_index: np.ndarray,
                 availability: str, min_battery_pct: float, concurrency: int, buffer_size: int,
                 max_staleness: int | None, sim: Sim) -> None:
        self._set_devices(seed, classes, class_index, min_battery_pct)
        if not 1 <= buffer_size <= concurrency <= self.n:
            raise ValueError("need 1 <= buffer_size <= concurrency <= clients")
        if max_staleness is not None and max_staleness < 0:
            raise ValueError("max_staleness must be >= 0 (or None)")
        self.concurrency, self.buffer_size = int(concurrency), int(buffer_size)
        self.max_staleness = None if max_staleness is None else int(max_staleness)
        self.availability = make_availability(availability, self.n, self.seed)
        table = np.array([[getattr(c, f) for f in TABLE] for c in self.classes], dtype=np.float64)
        self._table = {f: table[:, i] for i, f in enumerate(TABLE)}
        self._charge_s = (self._table["charge_pct_per_hour"][self.class_index] / 3600
                          * self.availability.charges)
        self._sim, self._token = sim, next(_TOKENS)

    @classmethod
    def start(cls, *, seed: int, classes: Sequence[DeviceClass], class_index: np.ndarray,
              availability: str, min_battery_pct: float, concurrency: int, buffer_size: int,
              max_staleness: int | None = None) -> AsyncClock:
        """A fleet at virtual time 0 and version 0, batteries drawn as FleetClock.start's."""
        n = len(class_index)
        lo, hi = INITIAL_BATTERY_PCT
        level = lo + (hi - lo) * generator(seed, "battery").random(n)
        sim = Sim(battery_pct=level, battery_t=np.zeros(n), energy_j=np.zeros(n),
                  participated=np.zeros(n, bool), recharging=np.zeros(n, bool), flight={},
                  now_s=0.0, version=0, started=0, buffered=0)
        return cls(seed=seed, classes=classes, class_index=class_index,
                   availability=availability, min_battery_pct=min_battery_pct,
                   concurrency=concurrency, buffer_size=buffer_size,
                   max_staleness=max_staleness, sim=sim)

    @property
    def version(self) -> int:
        """The model version: server updates applied so far."""
        return self._sim.version

    @property
    def now_s(self) -> float:
        """The virtual moment of the last server update (0 at the start)."""
        return self._sim.now_s

    @property
    def energy_j(self) -> np.ndarray:
        """Every device's energy in the updates that have ended."""
        return self._sim.energy_j.copy()

    def battery_at(self, t: float | None = None) -> np.ndarray:
        """Every device's battery at t (default: now): idle ones charging as the clock
        charges them, running ones drained by their update so far."""
        s = self._sim
        t = s.now_s if t is None else float(t)
        level = self._battery(s, slice(None), t)
        for c, r in s.flight.items():
            level[c] = float(updates.progress(r.u, np.array([min(t, r.stop_s)])).level[0])
        return level

    def windows(self, client: int, until_s: float | None = None) -> list[tuple[float, float]]:
        """One client's availability windows over [0, until_s] (default: now)."""
        return self.availability.windows(client, self.now_s if until_s is None else until_s)

    def running(self) -> list[Start]:
        """The updates training now, by client id: after a restart, train these again."""
        return [_start(self._sim.flight[c]) for c in sorted(self._sim.flight)]

    def state(self) -> dict[str, Any]:
        """Everything needed to continue, as plain scalars, lists and arrays."""
        return {"format": 1, "mode": "async", "seed": self.seed,
                "availability": self.availability.kind, "min_battery_pct": self.min_battery_pct,
                "concurrency": self.concurrency, "buffer_size": self.buffer_size,
                "max_staleness": self.max_staleness, "class_names": [c.name for c in self.classes],
                "class_table": np.stack([self._table[f] for f in TABLE], axis=1),
                "class_index": self.class_index.copy(), **self._sim.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AsyncClock:
        """The clock `state()` described, continuing exactly where it was."""
        if state.get("format") != 1 or state.get("mode") != "async":
            raise ValueError("not an async clock state (format 1)")
        table = np.asarray(state["class_table"], dtype=np.float64)
        classes = [DeviceClass(name=str(name), **dict(zip(TABLE, map(float, row), strict=True)))
                   for name, row in zip(state["class_names"], table, strict=True)]
        ms = state["max_staleness"]
        return cls(seed=int(state["seed"]), classes=classes, class_index=state["class_index"],
                   availability=str(state["availability"]),
                   min_battery_pct=float(state["min_battery_pct"]),
                   concurrency=int(state["concurrency"]), buffer_size=int(state["buffer_size"]),
                   max_staleness=None if ms is None else int(ms), sim=Sim.from_state(state))

    def plan_update(self, *, examples: np.ndarray,  # examples one update trains, all n clients
                    global_bytes: int,  # the global checkpoint every update downloads
                    update_bytes: int,  # the saved checkpoint every update uploads
                    model_bytes: int,  # the .tflite, downloaded on a first participation
                    ) -> AsyncPlan:
        """Plan up to the next server update without changing the state; see `apply`."""
        examples = np.asarray(examples)
        if examples.shape != (self.n,) or (examples < 0).any():
            raise ValueError(f"examples: need {self.n} counts >= 0")
        sizes = (examples, int(global_bytes), int(update_bytes), int(model_bytes))
        s = self._sim.copy()
        self._settle(s)
        begin = settled = s.now_s
        woke, empty_wakes = False, 0
        starts: list[Start] = []
        ended: list[Ended] = []
        while True:
            due = [c for c, r in s.flight.items() if r.stop_s <= s.now_s]
            if due:  # every update ending now is settled before anyone starts
                e = self._end(s, s.flight.pop(min(due)))
                ended.append(e)
                if e.outcome == "completed":
                    s.buffered += 1
                    if s.buffered == self.buffer_size:
                        ended.extend(self._server_update(s))
                        return self._plan(s, "aggregated", begin, starts, ended)
                continue
            before = len(starts)
            starts += self._launch(s, self._draw(s), sizes)
            # A wake lands where someone is eligible, up to rounding: a few tries, as
            # FleetClock's jumps.
            empty_wakes = empty_wakes + 1 if woke and len(starts) == before else 0
            if empty_wakes > MAX_JUMPS:
                raise RuntimeError(f"t={s.now_s}: no eligible client after {MAX_JUMPS} jumps")
            if any(r.stop_s <= s.now_s for r in s.flight.values()):
                continue  # a start that stops at once
            event = min((r.stop_s for r in s.flight.values()), default=math.inf)
            wake = self._next_eligible(s) if len(s.flight) < self.concurrency else math.inf
            t, woke = min(event, wake), wake < event
            if math.isinf(t) or t - begin > HORIZON_S:
                return self._plan(s, "stalled", begin, starts, ended)
            s.now_s = t
            if t - settled >= DAY_S:  # reads of the battery then span at most a day or so
                self._settle(s)
                settled = t

    def apply(self, plan: AsyncPlan) -> None:
        """Advance the state to the one a plan from this state ends in."""
        if plan.token != self._token:
            raise ValueError(f"update {plan.version}: the plan was made from another or an "
                             "older state")
        self._sim, self._token = plan.after, next(_TOKENS)

    def _plan(self, s: Sim, status: str, begin: float, starts: list[Start],
              ended: list[Ended]) -> AsyncPlan:
        needed = sorted({r.version for r in s.flight.values()} | {s.version})
        return AsyncPlan(version=self._sim.version + 1, status=status, virtual_start_s=begin,
                         virtual_end_s=s.now_s, starts=tuple(starts), ended=tuple(ended),
                         needed_versions=tuple(needed), running=tuple(sorted(s.flight)),
                         after=s, token=self._token)

    def _settle(self, s: Sim) -> None:
        # Idle devices' charging is folded in at each server update, as FleetClock does at
        # each round, so that later reads only look at the days since then.
        idle = s.idle()
        s.battery_pct = np.where(idle, self._battery(s, slice(None), s.now_s), s.battery_pct)
        s.battery_t = np.where(idle, s.now_s, s.battery_t)

    def _battery(self, s: Sim, ids: np.ndarray | slice, t: float) -> np.ndarray:
        if not self.availability.charges:
            return s.battery_pct[ids].copy()
        inside = self.availability.in_window_seconds(ids, s.battery_t[ids], t)
        return np.minimum(s.battery_pct[ids] + self._charge_s[ids] * inside, 100.0)

    def _thresholds(self, s: Sim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Idle mask, every device's battery now, and the level each needs to be eligible."""
        idle = s.idle()
        need = self.min_battery_pct + np.where(s.recharging, RECHARGE_PCT, 0.0)
        return idle, self._battery(s, slice(None), s.now_s), need

    def _draw(self, s: Sim) -> np.ndarray:
        """The devices that fill the free places now, one draw each, in the order drawn."""
        free = self.concurrency - len(s.flight)
        if free <= 0:
            return np.zeros(0, dtype=np.int64)
        idle, level, need = self._thresholds(s)
        ok = idle & (level > need + BATTERY_TOLERANCE)
        eligible = np.flatnonzero(ok & self.availability.available(slice(None), s.now_s))
        picked: list[int] = []
        while len(picked) < free and eligible.size:
            pick = generator(self.seed, "async_start", s.started).integers(eligible.size)
            s.started += 1
            picked.append(int(eligible[pick]))
            eligible = np.delete(eligible, pick)  # now training: not eligible for the next
        return np.array(picked, dtype=np.int64)

    def _next_eligible(self, s: Sim) -> float:
        idle, level, need = self._thresholds(s)
        ok = idle & (level > need + BATTERY_TOLERANCE)
        best = self.availability.next_available(np.flatnonzero(ok), s.now_s)
        target = need + 2 * BATTERY_TOLERANCE  # as FleetClock: charged just above it
        low = np.flatnonzero(idle & ~ok & (self._charge_s > 0) & (target < 100.0))
        if low.size:  # at or below its threshold: eligible once charged above it in a window
            wait = (target[low] - level[low]) / self._charge_s[low]
            when = self.availability.time_after_in_window(low, s.now_s, wait)
            best = min(best, float(when.min()))
        return best

    def _launch(self, s: Sim, ids: np.ndarray, sizes: tuple[np.ndarray, int, int, int]
                ) -> list[Start]:
        examples, global_bytes, update_bytes, model_bytes = sizes
        t, cls, tab = s.now_s, self.class_index[ids], self._table
        u = updates.build(
            t, bytes_down=global_bytes + np.where(s.participated[ids], 0, model_bytes),
            bytes_up=np.full(ids.size, update_bytes), examples=examples[ids],
            ms_per_example=tab["ms_per_example"][cls], down_kbps=tab["down_kbps"][cls],
            up_kbps=tab["up_kbps"][cls], train_watts=tab["train_watts"][cls],
            radio_j_per_mb=tab["radio_joules_per_mb"][cls], battery_wh=tab["battery_wh"][cls],
            charge_pct_per_hour=tab["charge_pct_per_hour"][cls] * self.availability.charges,
            level0=self._battery(s, ids, t))
        stop, cause = updates.stops(u, self.availability.window_end(ids, t), self.min_battery_pct)
        out: list[Start] = []
        first = s.started - ids.size
        for i, c in enumerate(ids.tolist()):
            row = updates.Updates(start_s=t, **{f: getattr(u, f)[i:i + 1] for f in _ROWS})
            # Within the battery tolerance a device may start a hair under the floor: it
            # stops at once, never before it started.
            s.flight[c] = Run(client=c, version=s.version, index=first + i,
                              stop_s=max(float(stop[i]), t), cause=int(cause[i]), u=row)
            s.recharging[c] = False
            out.append(_start(s.flight[c]))
        return out

    def _end(self, s: Sim, r: Run) -> Ended:
        got = updates.progress(r.u, np.array([r.stop_s]))
        left = self.min_battery_pct if r.cause == updates.BATTERY else float(got.level[0])
        left = min(max(left, 0.0), 100.0)
        c = r.client
        s.battery_pct[c], s.battery_t[c] = left, r.stop_s
        s.participated[c] |= bool(got.downloaded[0])
        s.energy_j[c] += got.energy_j[0]
        s.recharging[c] = r.cause == updates.BATTERY
        return Ended(client_id=c, start_version=r.version, start_index=r.index,
                     start_s=r.u.start_s, end_s=r.stop_s,
                     planned_end_s=float(r.u.planned_end_s[0]), outcome=_OUTCOME[r.cause],
                     staleness=s.version - r.version, energy_j=float(got.energy_j[0]),
                     bytes_down=int(got.bytes_down[0]), bytes_up=int(got.bytes_up[0]),
                     battery_pct=left)

    def _server_update(self, s: Sim) -> list[Ended]:
        """The version moves on; updates now too stale are cut at this moment."""
        s.version += 1
        s.buffered = 0
        if self.max_staleness is None:
            return []
        stale = sorted(c for c, r in s.flight.items()
                       if s.version - r.version > self.max_staleness)
        return [self._end(s, replace(s.flight.pop(c), stop_s=s.now_s, cause=CUT))
                for c in stale]


def _start(r: Run) -> Start:
    return Start(client_id=r.client, version=r.version, index=r.index, start_s=r.u.start_s,
                 planned_end_s=float(r.u.planned_end_s[0]), battery_pct=float(r.u.level0[0]),
                 will_arrive=r.cause == updates.NONE)
