"""One server update of an asynchronous fleet as the clock planned it: who started, who ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.federated.round_plan import OUTCOMES, ClientUpdate


@dataclass(frozen=True)
class Start:
    """A device that starts training from `version` (the run loop trains it at once)."""

    client_id: int
    version: int
    index: int  # starts count from 0 across the fleet: seed its training by it
    start_s: float
    planned_end_s: float
    battery_pct: float  # when it starts
    will_arrive: bool  # False: the clock already knows it drops (it may also be cut later)


@dataclass(frozen=True)
class Ended:
    """An update that ended: an arrival (outcome "completed") or one dropped or cut."""

    client_id: int
    start_version: int
    start_index: int  # its Start's index
    start_s: float
    end_s: float
    planned_end_s: float
    outcome: str
    staleness: int  # the version when it ended minus start_version
    energy_j: float
    bytes_down: int
    bytes_up: int
    battery_pct: float


@dataclass(frozen=True, eq=False)
class AsyncPlan:
    """The events from the previous server update to this one, in the order they happened.

    Apply them in order: every Start in `starts` starts from version `version - 1`; every
    completed Ended in `ended` is an arrival to apply in that order (FedBuff: the last one
    fills the buffer). `needed_versions` are the versions whose weights the run loop must
    still keep after this update: the start versions of updates still running, and `version`.
    """

    version: int  # the server update this plan ends with (a Round's number)
    # "aggregated", or "stalled": no server update can come (nobody can ever be eligible
    # again, or none came within HORIZON_S); its arrivals, fewer than K, stay buffered.
    status: str
    virtual_start_s: float
    virtual_end_s: float
    starts: tuple[Start, ...]
    ended: tuple[Ended, ...]
    needed_versions: tuple[int, ...]
    running: tuple[int, ...]  # client ids still training after this update
    after: Any = field(repr=False)  # the clock's state after it; see AsyncClock.apply
    token: int = field(repr=False)

    @property
    def arrivals(self) -> tuple[Ended, ...]:
        """The completed updates, in the order the server applies them."""
        return tuple(e for e in self.ended if e.outcome == "completed")

    @property
    def staleness(self) -> dict[str, float | None]:
        """Mean and max staleness of the arrivals applied (None without arrivals)."""
        taus = [e.staleness for e in self.arrivals]
        if not taus:
            return {"mean": None, "max": None}
        return {"mean": sum(taus) / len(taus), "max": max(taus)}

    @property
    def outcomes(self) -> dict[str, int]:
        """How many updates ended each way."""
        got = [e.outcome for e in self.ended]
        return {o: got.count(o) for o in OUTCOMES}

    @property
    def totals(self) -> dict[str, float]:
        """Bytes down, bytes up and energy of the updates that ended in this server update."""
        return {"bytes_down": sum(e.bytes_down for e in self.ended),
                "bytes_up": sum(e.bytes_up for e in self.ended),
                "energy_j": float(sum(e.energy_j for e in self.ended))}

    def updates(self) -> list[ClientUpdate]:
        """One timeline record per ended update, as a sync round's, in event order."""
        return [ClientUpdate(e.client_id, self.version, e.start_s, e.end_s, e.planned_end_s,
                             e.outcome, e.energy_j, e.bytes_down, e.bytes_up, e.battery_pct)
                for e in self.ended]
