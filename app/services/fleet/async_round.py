"""An asynchronous fleet's server update as a Round's record (a RoundPlan, which commit.py and
write.py store as they store a sync round): the updates that ended since the previous server
update, in event order, failed arrivals marked as such."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

import numpy as np

from app.federated.async_plan import AsyncPlan
from app.federated.round_plan import RoundPlan


def round_plan(aplan: AsyncPlan, failed: Set[int], battery: Mapping[int, float],
               clients: int) -> RoundPlan:
    """The Round of `aplan`; `failed`: start indices whose training failed; `battery`: each
    start's battery when it started (by start index)."""
    ended = aplan.ended
    outcome = tuple("failed" if e.start_index in failed and e.outcome == "completed"
                    else e.outcome for e in ended)
    settled = np.zeros(clients, dtype=np.float64)  # each device's battery when it started
    for e in ended:
        settled[e.client_id] = battery.get(e.start_index, e.battery_pct)

    def col(f: str, kind: Any) -> np.ndarray:
        return np.array([getattr(e, f) for e in ended], dtype=kind)

    return RoundPlan(
        round=aplan.version, status=aplan.status, virtual_start_s=aplan.virtual_start_s,
        virtual_end_s=aplan.virtual_end_s, waited_s=0.0, eligible=0,
        ids=col("client_id", np.int64), start_s=col("start_s", np.float64),
        end_s=col("end_s", np.float64), planned_end_s=col("planned_end_s", np.float64),
        outcome=outcome, energy_j=col("energy_j", np.float64),
        bytes_down=col("bytes_down", np.int64), bytes_up=col("bytes_up", np.int64),
        battery_pct=col("battery_pct", np.float64), downloaded=col("bytes_down", np.int64) > 0,
        completed=tuple(e.client_id for e, o in zip(ended, outcome, strict=True)
                        if o == "completed"),
        settled_pct=settled, token=0)
