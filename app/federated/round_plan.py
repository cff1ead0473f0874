"""A round as the virtual clock planned it: each selected update's outcome, time, cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

# "failed": the device ran its update to its end on the clock, but the update raised or
# came back non-finite (the round records why, and aggregates the others).
OUTCOMES = ("completed", "straggler", "dropped_offline", "dropped_battery", "failed")


@dataclass(frozen=True)
class ClientUpdate:
    """One selected client's update in a round, for timelines and reports."""

    client_id: int
    round: int
    start_s: float
    end_s: float  # when it stopped: completion, drop, or the round's end for a straggler
    planned_end_s: float  # when it would have ended undisturbed
    outcome: str
    energy_j: float
    bytes_down: int
    bytes_up: int
    battery_pct: float  # battery when it stopped


@dataclass(frozen=True, eq=False)
class RoundPlan:
    """One round on the virtual clock; per-client arrays are in `ids` order (ascending)."""

    round: int
    status: str  # "aggregated" | "abandoned" | "stalled" (no client can ever be eligible)
    virtual_start_s: float
    virtual_end_s: float
    waited_s: float  # how far the clock jumped because nobody was eligible
    eligible: int
    ids: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    planned_end_s: np.ndarray
    outcome: tuple[str, ...]
    energy_j: np.ndarray
    bytes_down: np.ndarray
    bytes_up: np.ndarray
    battery_pct: np.ndarray
    downloaded: np.ndarray
    completed: tuple[int, ...]  # in time and within clients_per_round, ascending
    settled_pct: np.ndarray = field(repr=False)  # every device's battery at the start
    token: int = field(repr=False)  # the state it was made from; see FleetClock.apply

    @property
    def aggregate(self) -> tuple[int, ...]:
        """The client ids whose updates are aggregated (none when abandoned)."""
        return self.completed if self.status == "aggregated" else ()

    @property
    def outcomes(self) -> dict[str, int]:
        """How many updates ended each way."""
        return {o: self.outcome.count(o) for o in OUTCOMES}

    @property
    def totals(self) -> dict[str, float]:
        """The round's bytes down, bytes up and energy."""
        return {"bytes_down": int(self.bytes_down.sum()), "bytes_up": int(self.bytes_up.sum()),
                "energy_j": float(self.energy_j.sum())}

    def with_failures(self, failed: Mapping[int, str], min_completed: int) -> RoundPlan:
        """This plan once some completed updates have failed: their outcome is "failed",
        they are no longer completed, and the round is abandoned below min_completed."""
        if not failed:
            return self
        outcome = tuple("failed" if int(c) in failed else o
                        for c, o in zip(self.ids, self.outcome, strict=True))
        completed = tuple(c for c in self.completed if c not in failed)
        status = self.status
        if status == "aggregated" and len(completed) < min_completed:
            status = "abandoned"
        return replace(self, outcome=outcome, completed=completed, status=status)

    def updates(self) -> list[ClientUpdate]:
        """One record per selected client, by id."""
        return [ClientUpdate(int(c), self.round, float(s), float(e), float(p), o, float(j),
                             int(d), int(u), float(b))
                for c, s, e, p, o, j, d, u, b in zip(
                    self.ids, self.start_s, self.end_s, self.planned_end_s, self.outcome,
                    self.energy_j, self.bytes_down, self.bytes_up, self.battery_pct, strict=True)]
