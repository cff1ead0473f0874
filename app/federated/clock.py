"""The virtual clock of one fleet: who is eligible, who counts, when each round ends.

Round r starts where round r-1 ended (round 1 at 0). Eligible clients are available at
the start with a battery strictly above the floor (a device that an update drained to the
floor, or that charged up to exactly it, is not); with none, the clock moves to the first
moment one is, and when no device can ever be eligible again (at or under the floor and
never charging, or a floor no battery can exceed) the round is `stalled`.
ceil(clients_per_round x over_commit) eligible clients are drawn from a generator
seeded by (seed, "selection", r) (all when fewer). The round ends at the
clients_per_round-th completed update, at the deadline, or when the last selected
update has ended or dropped, whichever comes first: the server never waits for nothing.
Updates still running then are stragglers and stop there (the server closes the round);
ties in end time go to the lower client id. Fewer than min_completed completions: the
round is abandoned and aggregates nothing, but its time, energy and battery still count.

Battery: each device starts at a seeded level, uniform in [20, 100] %. Under "always" it
never charges; under "diurnal" it charges at charge_pct_per_hour while inside a window,
its own training included. Training drains it by each update's energy; the level stays
in [0, 100]. Everyday use of the phone is not modelled.

The state is plain arrays (`state()`), so a fleet restored with `from_state` continues
bit-identically. Not thread-safe: one owner, the fleet's driver.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.federated import updates
from app.federated.availability import make_availability
from app.federated.devices import DeviceClass
from app.federated.round_plan import OUTCOMES, RoundPlan
from app.federated.seeds import generator

TABLE = ("ms_per_example", "down_kbps", "up_kbps", "train_watts", "radio_joules_per_mb",
         "battery_wh", "charge_pct_per_hour")
INITIAL_BATTERY_PCT = (20.0, 100.0)
# Charging integrals are summed window by window, so a level may sit a few ulps off the
# value it charged to: a level within this much above the floor still counts as at it
# (not eligible), and a charging device is waited for until it is twice this above it.
BATTERY_TOLERANCE = 1e-9
MAX_JUMPS = 4
# Every state gets a token no other state in the process shares, so that a plan can only
# be applied to the state it was made from.
_TOKENS = itertools.count()


class Devices:
    """What every clock (sync and async) keeps of its devices."""

    seed: int
    min_battery_pct: float
    classes: tuple[DeviceClass, ...]
    class_index: np.ndarray
    n: int

    def _set_devices(self, seed: int, classes: Sequence[DeviceClass], class_index: np.ndarray,
                     min_battery_pct: float) -> None:
        """The seed, the battery floor, the classes (each with its ms_per_example resolved)
        and each client's class, checked."""
        if any(c.ms_per_example is None for c in classes):
            raise ValueError("resolve every class's ms_per_example first (DeviceClass.resolve)")
        self.seed, self.min_battery_pct = int(seed), float(min_battery_pct)
        self.classes = tuple(classes)
        self.class_index = np.array(class_index, dtype=np.int64)
        self.n = self.class_index.size


class FleetClock(Devices):
    """Per-client device state in arrays, and the planning of rounds over it."""

    def __init__(self, *, seed: int, classes: Sequence[DeviceClass], class_index: np.ndarray,
                 availability: str, min_battery_pct: float, battery_pct: np.ndarray,
                 battery_t: np.ndarray, participated: np.ndarray, energy_j: np.ndarray,
                 now_s: float = 0.0, last_round: int = 0) -> None:
        self._set_devices(seed, classes, class_index, min_battery_pct)
        self.availability = make_availability(availability, self.n, self.seed)
        self.battery_pct = np.array(battery_pct, dtype=np.float64)
        self.battery_t = np.array(battery_t, dtype=np.float64)
        self.participated = np.array(participated, dtype=bool)
        self.energy_j = np.array(energy_j, dtype=np.float64)
        self.now_s, self.last_round = float(now_s), int(last_round)
        self._token = next(_TOKENS)
        table = np.array([[getattr(c, f) for f in TABLE] for c in self.classes], dtype=np.float64)
        self._table = {f: table[:, i] for i, f in enumerate(TABLE)}
        charging = self.availability.charges
        self._charge_s = self._table["charge_pct_per_hour"][self.class_index] / 3600 * charging

    @classmethod
    def start(cls, *, seed: int, classes: Sequence[DeviceClass], class_index: np.ndarray,
              availability: str, min_battery_pct: float) -> FleetClock:
        """A fleet at virtual time 0, batteries drawn from (seed, "battery")."""
        n = len(class_index)
        lo, hi = INITIAL_BATTERY_PCT
        level = lo + (hi - lo) * generator(seed, "battery").random(n)
        return cls(seed=seed, classes=classes, class_index=class_index,
                   availability=availability, min_battery_pct=min_battery_pct,
                   battery_pct=level, battery_t=np.zeros(n), participated=np.zeros(n, bool),
                   energy_j=np.zeros(n))

    def state(self) -> dict[str, Any]:
        """Everything needed to continue, as plain scalars, lists and arrays."""
        return {"format": 1, "seed": self.seed, "availability": self.availability.kind,
                "min_battery_pct": self.min_battery_pct, "now_s": self.now_s,
                "last_round": self.last_round, "class_names": [c.name for c in self.classes],
                "class_table": np.stack([self._table[f] for f in TABLE], axis=1),
                "class_index": self.class_index.copy(), "battery_pct": self.battery_pct.copy(),
                "battery_t": self.battery_t.copy(), "participated": self.participated.copy(),
                "energy_j": self.energy_j.copy()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FleetClock:
        """The clock `state()` described, continuing exactly where it was."""
        if state.get("format") != 1:
            raise ValueError(f"unknown clock state format {state.get('format')!r}")
        table = np.asarray(state["class_table"], dtype=np.float64)
        classes = [DeviceClass(name=str(name), **dict(zip(TABLE, map(float, row), strict=True)))
                   for name, row in zip(state["class_names"], table, strict=True)]
        return cls(seed=state["seed"], classes=classes, class_index=state["class_index"],
                   availability=state["availability"], min_battery_pct=state["min_battery_pct"],
                   battery_pct=state["battery_pct"], battery_t=state["battery_t"],
                   participated=state["participated"], energy_j=state["energy_j"],
                   now_s=state["now_s"], last_round=state["last_round"])

    def battery_at(self, t: float | None = None) -> np.ndarray:
        """Every device's battery percent at t (default: now), charging included."""
        t = self.now_s if t is None else float(t)
        if not self.availability.charges:
            return self.battery_pct.copy()
        inside = self.availability.in_window_seconds(slice(None), self.battery_t, t)
        return np.minimum(self.battery_pct + self._charge_s * inside, 100.0)

    def windows(self, client: int, until_s: float | None = None) -> list[tuple[float, float]]:
        """One client's availability windows over [0, until_s] (default: now)."""
        return self.availability.windows(client, self.now_s if until_s is None else until_s)

    def _above_floor(self, level: np.ndarray) -> np.ndarray:
        return level > self.min_battery_pct + BATTERY_TOLERANCE

    def _eligible(self, t: float, level: np.ndarray) -> np.ndarray:
        ok = self._above_floor(level)
        return np.flatnonzero(ok & self.availability.available(slice(None), t))

    def _next_eligible(self, t: float, level: np.ndarray) -> float:
        ok = self._above_floor(level)
        best = self.availability.next_available(np.flatnonzero(ok), t)
        target = self.min_battery_pct + 2 * BATTERY_TOLERANCE
        low = np.flatnonzero(~ok & (self._charge_s > 0))
        if low.size and target < 100.0:  # eligible once charged above the floor in a window
            need_s = (target - level[low]) / self._charge_s[low]
            best = min(best, float(self.availability.time_after_in_window(low, t, need_s).min()))
        return best

    def plan_round(self, round: int, *, clients_per_round: int,
                   examples: np.ndarray,  # examples one update trains, for all n clients
                   global_bytes: int,  # the global checkpoint every update downloads
                   update_bytes: int,  # the saved checkpoint every update uploads
                   model_bytes: int,  # the .tflite, downloaded on a first participation
                   over_commit: float = 1.0, deadline_s: float | None = None,
                   min_completed: int = 1, start_s: float | None = None) -> RoundPlan:
        """Plan one round from now (or start_s) without changing the state; see `apply`."""
        if clients_per_round < 1 or not 1 <= min_completed <= clients_per_round:
            raise ValueError("need clients_per_round >= 1 and 1 <= min_completed <= it")
        if not over_commit >= 1.0 or (deadline_s is not None and not deadline_s > 0):
            raise ValueError("need over_commit >= 1 and a deadline > 0 (or None)")
        examples = np.asarray(examples)
        if examples.shape != (self.n,) or (examples < 0).any():
            raise ValueError(f"examples: need {self.n} counts >= 0")
        asked = t = self.now_s if start_s is None else float(start_s)
        level = self.battery_at(t)
        chosen = self._eligible(t, level)
        jumps = 0
        while not chosen.size:  # a jump lands where someone is eligible, up to rounding
            if jumps == MAX_JUMPS:
                raise RuntimeError(f"round {round}: no eligible client after {jumps} jumps")
            t = self._next_eligible(t, level)
            if math.isinf(t):
                return self._stalled(round, asked, level)
            level = self.battery_at(t)
            chosen = self._eligible(t, level)
            jumps += 1
        eligible = chosen.size
        # Rounded first: 100 x 1.1 is 110.00000000000001 and must select 110, not 111.
        wanted = math.ceil(round_(clients_per_round * over_commit))
        if eligible > wanted:
            pick = generator(self.seed, "selection", round).choice(chosen, wanted, replace=False)
            chosen = np.sort(pick)
        return self._run(round, t, asked, level, chosen, eligible, examples, clients_per_round,
                         deadline_s, min_completed, global_bytes, update_bytes, model_bytes)

    def _run(self, round: int, t: float, asked: float, level: np.ndarray, ids: np.ndarray,
             eligible: int, examples: np.ndarray, k: int, deadline_s: float | None,
             min_completed: int, global_bytes: int, update_bytes: int,
             model_bytes: int) -> RoundPlan:
        cls, tab = self.class_index[ids], self._table
        first = ~self.participated[ids]
        u = updates.build(
            t, bytes_down=global_bytes + np.where(first, model_bytes, 0),
            bytes_up=np.full(ids.size, update_bytes), examples=examples[ids],
            ms_per_example=tab["ms_per_example"][cls], down_kbps=tab["down_kbps"][cls],
            up_kbps=tab["up_kbps"][cls], train_watts=tab["train_watts"][cls],
            radio_j_per_mb=tab["radio_joules_per_mb"][cls], battery_wh=tab["battery_wh"][cls],
            charge_pct_per_hour=tab["charge_pct_per_hour"][cls] * self.availability.charges,
            level0=level[ids])
        planned = u.planned_end_s
        stop, cause = updates.stops(u, self.availability.window_end(ids, t), self.min_battery_pct)
        order = np.lexsort((ids, planned))  # by end time, ties to the lower id
        finishers = order[cause[order] == updates.NONE]
        kth = planned[finishers[k - 1]] if finishers.size >= k else math.inf
        deadline = t + deadline_s if deadline_s is not None else math.inf
        end = min(kth, deadline, float(stop.max()))
        in_time = finishers[planned[finishers] <= end][:k]
        done = np.zeros(ids.size, dtype=bool)
        done[in_time] = True
        dropped = (cause != updates.NONE) & (stop <= end)
        outcome = np.where(done, 0, np.where(dropped, 1 + cause, 1))  # index into OUTCOMES
        stop = np.minimum(stop, end)
        got = updates.progress(u, stop)
        left = np.where(dropped & (cause == updates.BATTERY), self.min_battery_pct, got.level)
        status = "aggregated" if done.sum() >= min_completed else "abandoned"
        return RoundPlan(round=round, status=status, virtual_start_s=t, virtual_end_s=end,
                         waited_s=t - asked, eligible=eligible, ids=ids,
                         start_s=np.full(ids.size, t), end_s=stop, planned_end_s=planned,
                         outcome=tuple(OUTCOMES[i] for i in outcome), energy_j=got.energy_j,
                         bytes_down=got.bytes_down, bytes_up=got.bytes_up,
                         battery_pct=np.clip(left, 0.0, 100.0), downloaded=got.downloaded,
                         completed=tuple(int(c) for c in np.sort(ids[done])),
                         settled_pct=level, token=self._token)

    def _stalled(self, round: int, t: float, level: np.ndarray) -> RoundPlan:
        none_f, none_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return RoundPlan(round=round, status="stalled", virtual_start_s=t, virtual_end_s=t,
                         waited_s=0.0, eligible=0, ids=none_i, start_s=none_f, end_s=none_f,
                         planned_end_s=none_f, outcome=(), energy_j=none_f, bytes_down=none_i,
                         bytes_up=none_i, battery_pct=none_f, downloaded=np.zeros(0, bool),
                         completed=(), settled_pct=level, token=self._token)

    def apply(self, plan: RoundPlan) -> None:
        """Advance the state by a plan from this state: batteries, participation, energy, now."""
        if plan.token != self._token:
            raise ValueError(f"round {plan.round}: the plan was made from another or an "
                             "older state")
        if plan.status == "stalled":
            return
        self.battery_pct = plan.settled_pct.copy()
        self.battery_t = np.full(self.n, plan.virtual_start_s)
        self.battery_pct[plan.ids] = plan.battery_pct
        self.battery_t[plan.ids] = plan.end_s
        self.participated[plan.ids] |= plan.downloaded
        self.energy_j[plan.ids] += plan.energy_j
        self.now_s, self.last_round = plan.virtual_end_s, plan.round
        self._token = next(_TOKENS)


def round_(x: float) -> float:
    """x rounded to 9 decimals (the product's binary error must not push ceil up)."""
    return round(x, 9)
