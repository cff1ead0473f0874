"""An async server update as a Round's record (services/fleet/async_round.py), and the async
clock's reads (battery, energy, windows) that the Client view uses: pure, no server."""

from __future__ import annotations

import numpy as np

from app.federated.async_clock import AsyncClock
from app.services.fleet.async_round import round_plan
from tests.federated.clock_helpers import FAST, GLOBAL, MODEL, SLOW, UPDATE

SIZES = {"global_bytes": GLOBAL, "update_bytes": UPDATE, "model_bytes": MODEL}


def _plans(updates: int) -> tuple[AsyncClock, list]:  # type: ignore[type-arg]
    clock = AsyncClock.start(seed=0, classes=(FAST, SLOW), class_index=np.array([0, 0, 1, 1]),
                             availability="always", min_battery_pct=0.0, concurrency=3,
                             buffer_size=2)
    plans = []
    for _ in range(updates):
        plan = clock.plan_update(examples=np.full(4, 100), **SIZES)
        clock.apply(plan)
        plans.append(plan)
    return clock, plans


def test_round_plan_keeps_the_ended_updates_in_event_order() -> None:
    _, plans = _plans(3)
    battery = {s.index: s.battery_pct for p in plans for s in p.starts}
    for p in plans:
        r = round_plan(p, set(), battery, 4)
        assert r.round == p.version and r.status == "aggregated"
        assert r.ids.tolist() == [e.client_id for e in p.ended]
        assert r.completed == tuple(e.client_id for e in p.arrivals)
        assert r.outcomes == p.outcomes and r.totals == p.totals
        assert [(u.client_id, u.start_s, u.end_s, u.outcome) for u in r.updates()] == [
            (u.client_id, u.start_s, u.end_s, u.outcome) for u in p.updates()]
        # The battery when the update started, not when it ended (a device that ended twice
        # in one update: its later one's).
        started = {e.client_id: battery[e.start_index] for e in p.ended}
        assert {c: r.settled_pct[c] for c in started} == started


def test_round_plan_marks_failed_arrivals() -> None:
    _, plans = _plans(1)
    first = plans[0].arrivals[0]
    r = round_plan(plans[0], {first.start_index}, {}, 4)
    assert r.outcomes["failed"] == 1
    assert r.completed == tuple(e.client_id for e in plans[0].arrivals[1:])


def test_async_clock_reads_battery_energy_and_windows() -> None:
    clock, plans = _plans(2)
    assert clock.energy_j.sum() == sum(e.energy_j for p in plans for e in p.ended)
    level = clock.battery_at()
    assert level.shape == (4,) and ((level >= 0) & (level <= 100)).all()
    running = {s.client_id for s in clock.running()}
    idle = [c for c in range(4) if c not in running]
    # A running device drains while it trains; an idle one (no charging) holds its level.
    later = clock.battery_at(clock.now_s + 1.0)
    assert all(later[c] <= level[c] for c in running)
    assert all(later[c] == level[c] for c in idle)
    assert clock.windows(0) == [(0.0, clock.now_s)]
