"""The mutable state of an asynchronous clock, and its round trip through plain arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from app.federated import updates

_ROW = ("bytes_down", "bytes_up", "charge_pct_s", "pct_per_j", "level0")  # Updates' 1-d fields
_DEVICE = ("battery_pct", "battery_t", "energy_j", "participated", "recharging")


@dataclass(frozen=True)
class Run:
    """One running update: the Updates row it was planned from, and when and why it stops."""

    client: int
    version: int
    index: int  # the start's number: its draw's seed, and a key for its training's seed
    stop_s: float
    cause: int  # updates.NONE, OFFLINE, BATTERY, or async_clock.CUT
    u: updates.Updates  # one row


@dataclass
class Sim:
    """Per-device arrays, the running updates and the counters; a plan works on a copy."""

    battery_pct: np.ndarray
    battery_t: np.ndarray
    energy_j: np.ndarray
    participated: np.ndarray
    recharging: np.ndarray  # dropped for battery, not yet back at floor + RECHARGE_PCT
    flight: dict[int, Run]  # client id -> its running update
    now_s: float
    version: int
    started: int  # starts so far: the index seeding the next draw
    buffered: int  # completed arrivals since the last server update

    def copy(self) -> Sim:
        """A copy whose arrays and running set can change without touching this one."""
        return replace(self, flight=dict(self.flight),
                       **{f: getattr(self, f).copy() for f in _DEVICE})

    def idle(self) -> np.ndarray:
        """True for every device not training now."""
        out = np.ones(self.battery_pct.size, dtype=bool)
        out[np.fromiter(self.flight, dtype=np.int64, count=len(self.flight))] = False
        return out

    def to_state(self) -> dict[str, Any]:
        """Scalars and arrays; running updates as run_* arrays in client-id order."""
        runs = [self.flight[c] for c in sorted(self.flight)]
        out: dict[str, Any] = {"now_s": self.now_s, "version": self.version,
                               "started": self.started, "buffered": self.buffered}
        out.update({f: getattr(self, f).copy() for f in _DEVICE})
        for f in ("client", "version", "index", "cause"):
            out[f"run_{f}"] = np.array([getattr(r, f) for r in runs], dtype=np.int64)
        out["run_start_s"] = np.array([r.u.start_s for r in runs], dtype=np.float64)
        out["run_stop_s"] = np.array([r.stop_s for r in runs], dtype=np.float64)
        for f in _ROW:
            kind = np.int64 if f.startswith("bytes") else np.float64
            out[f"run_{f}"] = np.array([getattr(r.u, f)[0] for r in runs], dtype=kind)
        for f in ("phase_s", "phase_j"):
            out[f"run_{f}"] = np.array([getattr(r.u, f)[0] for r in runs],
                                       dtype=np.float64).reshape(-1, 3)
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Sim:
        """The Sim `to_state` described."""
        col = {k[4:]: np.asarray(v) for k, v in state.items() if k.startswith("run_")}
        flight = {}
        for i, c in enumerate(col["client"].tolist()):
            u = updates.Updates(start_s=float(col["start_s"][i]),
                                phase_s=np.array(col["phase_s"][i:i + 1], dtype=np.float64),
                                phase_j=np.array(col["phase_j"][i:i + 1], dtype=np.float64),
                                **{f: col[f][i:i + 1].copy() for f in _ROW})
            flight[c] = Run(client=c, version=int(col["version"][i]), index=int(col["index"][i]),
                            stop_s=float(col["stop_s"][i]), cause=int(col["cause"][i]), u=u)
        device = {f: np.array(state[f], dtype=bool if f in ("participated", "recharging")
                              else np.float64) for f in _DEVICE}
        return cls(**device, flight=flight, now_s=float(state["now_s"]),
                   version=int(state["version"]), started=int(state["started"]),
                   buffered=int(state["buffered"]))
