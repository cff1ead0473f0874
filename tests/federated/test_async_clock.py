"""The asynchronous clock: event order, ties, concurrency, cuts, resume, and the sync clock's rules.

The two-class figures of clock_helpers are exact in binary, so times compare with ==. FAST:
first update 4 + 1 + 2 = 7 s for 100 examples (download with the .tflite, compute, upload),
later ones 1 + 1 + 2 = 4 s; SLOW: 8 + 4 + 4 = 16 s, later 2 + 4 + 4 = 10 s.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from app.federated.async_clock import RECHARGE_PCT, AsyncClock
from app.federated.async_rules import FedBuff, Staleness, server_update
from app.federated.clock import FleetClock
from app.federated.devices import DeviceClass, catalogue, default_mix, draw_classes
from app.federated.strategies import FedAvg
from tests.federated.clock_helpers import FAST, GLOBAL, MODEL, SLOW, UPDATE

SIZES = {"global_bytes": GLOBAL, "update_bytes": UPDATE, "model_bytes": MODEL}


def _clock(class_index, *, concurrency, buffer_size=1, max_staleness=None, classes=(FAST, SLOW),
           availability="always", floor=0.0, seed=0):
    return AsyncClock.start(seed=seed, classes=classes, class_index=np.array(class_index),
                            availability=availability, min_battery_pct=floor,
                            concurrency=concurrency, buffer_size=buffer_size,
                            max_staleness=max_staleness)


def _run(clock, updates, examples=100):
    """`updates` server updates, each planned and applied; the plans."""
    plans = []
    for _ in range(updates):
        plan = clock.plan_update(examples=np.full(clock.n, examples), **SIZES)
        clock.apply(plan)
        plans.append(plan)
    return plans


def _starts(plan):
    return [(s.client_id, s.version, s.start_s) for s in plan.starts]


def _ended(plan):
    return [(e.client_id, e.start_version, e.start_s, e.end_s, e.outcome, e.staleness)
            for e in plan.ended]


def test_plan_updates_follow_the_events_by_hand():
    p = _run(_clock([0, 1], concurrency=2), 5)
    assert sorted(_starts(p[0])) == [(0, 0, 0.0), (1, 0, 0.0)]
    assert _ended(p[0]) == [(0, 0, 0.0, 7.0, "completed", 0)]
    assert (p[0].version, p[0].virtual_start_s, p[0].virtual_end_s) == (1, 0.0, 7.0)
    # Only what ended counts: client 0's 1 s at 2 W and 6000 bytes at 500 J/MB.
    assert p[0].totals == {"bytes_down": GLOBAL + MODEL, "bytes_up": UPDATE, "energy_j": 5.0}
    assert p[0].outcomes["completed"] == 1 and p[0].staleness == {"mean": 0.0, "max": 0}
    assert _starts(p[1]) == [(0, 1, 7.0)] and _ended(p[1]) == [(0, 1, 7.0, 11.0, "completed", 0)]
    assert _starts(p[2]) == [(0, 2, 11.0)] and _ended(p[2]) == [(0, 2, 11.0, 15.0, "completed", 0)]
    # The slow device started from version 0 and arrives after three server updates.
    assert _starts(p[3]) == [(0, 3, 15.0)] and _ended(p[3]) == [(1, 0, 0.0, 16.0, "completed", 3)]
    assert p[3].staleness == {"mean": 3.0, "max": 3} and p[3].needed_versions == (3, 4)
    assert _starts(p[4]) == [(1, 4, 16.0)] and _ended(p[4]) == [(0, 3, 15.0, 19.0, "completed", 1)]
    assert p[4].running == (1,) and p[4].needed_versions == (4, 5)
    assert [x.status for x in p] == ["aggregated"] * 5


def test_plan_update_applies_every_arrival_of_a_moment_before_any_start():
    p = _run(_clock([0, 0, 0], concurrency=3), 4)  # all three end at 7 s
    assert [_ended(x) for x in p[:3]] == [[(c, 0, 0.0, 7.0, "completed", c)] for c in range(3)]
    assert [x.virtual_end_s for x in p[:3]] == [7.0, 7.0, 7.0]
    assert p[1].starts == p[2].starts == ()
    assert sorted(_starts(p[3])) == [(c, 3, 7.0) for c in range(3)]  # from the newest version


def test_plan_update_fedbuff_buffers_k_arrivals_across_a_tie():
    p = _run(_clock([0, 0, 0], concurrency=3, buffer_size=2), 2)
    assert _ended(p[0]) == [(0, 0, 0.0, 7.0, "completed", 0), (1, 0, 0.0, 7.0, "completed", 0)]
    # Client 2's arrival at 7 s comes after the update, so it is one version stale and is
    # the first in the next buffer; the three then restart at 7 s from version 1.
    assert _ended(p[1])[0] == (2, 0, 0.0, 7.0, "completed", 1)
    assert sorted(_starts(p[1])) == [(c, 1, 7.0) for c in range(3)]
    assert _ended(p[1])[1] == (0, 1, 7.0, 11.0, "completed", 0)


def test_plan_update_cuts_updates_past_max_staleness():
    p = _run(_clock([0, 1], concurrency=2, max_staleness=1), 3)
    assert _ended(p[0]) == [(0, 0, 0.0, 7.0, "completed", 0)]
    # Version 2 at 11 s: the slow update from version 0 would arrive 2 versions late.
    assert _ended(p[1]) == [(0, 1, 7.0, 11.0, "completed", 0),
                            (1, 0, 0.0, 11.0, "straggler", 2)]
    cut = p[1].ended[1]
    # Download (4000 bytes at 250 J/MB) and 3 of 4 s of compute at 1 W; nothing uploaded.
    assert (cut.energy_j, cut.bytes_down, cut.bytes_up) == (1.0 + 3.0, GLOBAL + MODEL, 0)
    assert p[1].outcomes["straggler"] == 1 and p[1].staleness == {"mean": 0.0, "max": 0}
    assert p[1].needed_versions == (2,)
    assert sorted(_starts(p[2])) == [(0, 2, 11.0), (1, 2, 11.0)]


@pytest.mark.parametrize("max_staleness", [0, 2])
def test_plan_update_never_applies_an_arrival_staler_than_the_cap(max_staleness):
    clock = _fleet_clock(n=30, concurrency=10, buffer_size=2, max_staleness=max_staleness)
    plans = _run(clock, 40, examples=200)
    taus = [e.staleness for p in plans for e in p.arrivals]
    assert max(taus) <= max_staleness
    assert any(p.outcomes["straggler"] for p in plans)


def _fleet_clock(*, n=40, concurrency=8, buffer_size=3, max_staleness=None,
                 availability="always", floor=0.0, seed=3, model_ms=0.5):
    names = sorted(default_mix())
    classes = [catalogue()[c].resolve(model_ms) for c in names]
    index = draw_classes(tuple(default_mix()[c] for c in names), n, seed)
    return AsyncClock.start(seed=seed, classes=classes, class_index=index,
                            availability=availability, min_battery_pct=floor,
                            concurrency=concurrency, buffer_size=buffer_size,
                            max_staleness=max_staleness)


def _intervals(plans):
    """(client, start, end) of every update started, end inf while still running."""
    ends = {(e.client_id, e.start_s): e.end_s for p in plans for e in p.ended}
    return [(s.client_id, s.start_s, ends.get((s.client_id, s.start_s), math.inf))
            for p in plans for s in p.starts]


def test_plan_update_keeps_concurrency_devices_training():
    plans = _run(_fleet_clock(), 60)
    spans = _intervals(plans)
    horizon = plans[-1].virtual_end_s
    moments = sorted({t for _, s, e in spans for t in (s, e) if t < horizon})
    for t in moments:  # half-open [start, end): what runs right after each event
        running = [c for c, s, e in spans if s <= t < e]
        assert len(running) == 8, t
        assert len(set(running)) == 8  # nobody trains twice at once
    assert all(p.staleness["max"] is not None for p in plans)
    for p in plans:
        assert len(p.arrivals) == 3  # buffer_size arrivals per server update


def test_plan_update_reports_the_versions_still_needed():
    clock = _fleet_clock()
    for _ in range(30):
        plan = clock.plan_update(examples=np.full(clock.n, 100), **SIZES)
        clock.apply(plan)
        running = clock.running()
        assert plan.running == tuple(r.client_id for r in running)
        assert plan.needed_versions == tuple(sorted({r.version for r in running}
                                                    | {clock.version}))
        assert all(s.version == plan.version - 1 for s in plan.starts)


def _persist(state):
    """Through the same kind of blob the fleet writes: arrays in an .npz, scalars as JSON."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    buf = io.BytesIO()
    np.savez(buf, __scalars__=np.array(json.dumps(scalars)), **arrays)
    with np.load(io.BytesIO(buf.getvalue()), allow_pickle=False) as npz:
        back = {k: npz[k] for k in npz.files if k != "__scalars__"}
        back.update(json.loads(str(npz["__scalars__"])))
    return back


@pytest.mark.parametrize("availability", ["always", "diurnal"])
def test_resume_async_clock_from_state_bit_identical(availability):
    # Updates of minutes: some outlast their window and drop.
    kw = {"availability": availability, "floor": 30.0, "max_staleness": 4, "model_ms": 100.0}
    whole = _run(_fleet_clock(**kw), 24, examples=3000)
    clock, resumed = _fleet_clock(**kw), []
    for _ in range(8):
        resumed += _run(clock, 3, examples=3000)
        clock = AsyncClock.from_state(_persist(clock.state()))
    for a, b in zip(whole, resumed, strict=True):
        assert (a.version, a.status, a.virtual_start_s, a.virtual_end_s) == \
            (b.version, b.status, b.virtual_start_s, b.virtual_end_s)
        assert (a.starts, a.ended, a.needed_versions) == (b.starts, b.ended, b.needed_versions)
    again = _run(_fleet_clock(**kw), 24, examples=3000)  # and a twin run agrees too
    assert [p.ended for p in again] == [p.ended for p in whole]
    if availability == "diurnal":  # the run exercised drops, so their state round-tripped
        assert sum(p.outcomes["dropped_offline"] for p in whole) > 0


def test_resume_async_clock_lists_the_updates_to_train_again():
    clock = _fleet_clock()
    plans = _run(clock, 12)
    index = [s.index for p in plans for s in p.starts]
    assert index == list(range(len(index)))  # one number per start, in order
    ended = {e.start_index for p in plans for e in p.ended}
    started = {s.index: s for p in plans for s in p.starts}
    resumed = AsyncClock.from_state(_persist(clock.state()))
    # What a run loop restarted after SIGKILL trains again: the starts that have not ended.
    assert resumed.running() == [started[i] for i in sorted(set(started) - ended,
                                                            key=lambda i: started[i].client_id)]


def test_reject_a_plan_applied_twice():
    clock = _clock([0, 1], concurrency=2)
    plan = clock.plan_update(examples=np.full(2, 100), **SIZES)
    clock.apply(plan)
    with pytest.raises(ValueError, match="older state"):
        clock.apply(plan)


def test_plan_update_stalls_when_nobody_can_ever_train():
    clock = _clock([0, 1], concurrency=1, floor=100.0)  # batteries start below 100 %
    plan = clock.plan_update(examples=np.full(2, 100), **SIZES)
    assert plan.status == "stalled" and plan.starts == () and plan.ended == ()


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_plan_update_one_device_matches_the_sync_clock(seed):
    """One device, C = K = 1: each of its updates is the sync clock's round, field for field."""
    phone = catalogue()["mid_range"].resolve(20.0)  # 80 min updates: some outlast a window
    kw = {"seed": seed, "classes": [phone], "class_index": np.array([0]),
          "availability": "diurnal", "min_battery_pct": 0.0}
    sync = FleetClock.start(**kw)
    done = []
    while len(done) < 12:
        rnd = sync.plan_round(len(done) + 1, clients_per_round=1, examples=np.array([20000]),
                              **SIZES)
        sync.apply(rnd)
        done += rnd.updates()
    clock = AsyncClock.start(**kw, concurrency=1, buffer_size=1)
    ended = []
    while len(ended) < 12:
        ended += _run(clock, 1, examples=20000)[0].updates()
    fields = ("client_id", "start_s", "end_s", "planned_end_s", "outcome", "energy_j",
              "bytes_down", "bytes_up", "battery_pct")
    assert [[getattr(u, f) for f in fields] for u in ended[:12]] == \
        [[getattr(u, f) for f in fields] for u in done]
    assert {u.outcome for u in done} == {"completed", "dropped_offline"}


def test_plan_update_battery_drop_waits_for_the_recharge_margin():
    # An update costs the weak class 300 J = 16.7 % of its battery: it drops below 46.7 %,
    # and would drop again at once if it restarted just above the floor.
    weak = DeviceClass(name="weak", ms_per_example=1000.0, down_kbps=1000.0, up_kbps=1000.0,
                       train_watts=5.0, radio_joules_per_mb=0.0, battery_wh=0.5,
                       charge_pct_per_hour=20.0)
    clock = _clock([0, 0, 1, 1], classes=(weak, FAST), concurrency=2, availability="diurnal",
                   floor=30.0, seed=4)
    plans = _run(clock, 20, examples=60)
    starts = sorted((s.client_id, s.start_s, s.battery_pct) for p in plans for s in p.starts)
    drops = [e for p in plans for e in p.ended if e.outcome == "dropped_battery"]
    assert drops and all(e.battery_pct == 30.0 for e in drops)
    restarted = 0
    for e in drops:  # its next start, if any, is at floor + RECHARGE_PCT or above
        later = [level for c, t, level in starts if c == e.client_id and t >= e.end_s]
        if later:
            restarted += 1
            assert later[0] > 30.0 + RECHARGE_PCT
    assert restarted


def test_plan_update_battery_drop_without_charging_never_trains_again():
    weak = DeviceClass(name="weak", ms_per_example=1000.0, down_kbps=1000.0, up_kbps=1000.0,
                       train_watts=50.0, radio_joules_per_mb=0.0, battery_wh=0.5,
                       charge_pct_per_hour=0.0)
    clock = _clock([0, 0, 1], classes=(weak, FAST), concurrency=1, floor=10.0)
    plans = _run(clock, 10, examples=100)  # 5000 J a weak update, 1800 J in its battery
    dropped = [e.client_id for p in plans for e in p.ended if e.outcome == "dropped_battery"]
    started = [s.client_id for p in plans for s in p.starts]
    assert dropped  # each weak device that tried dropped once, and never started again
    assert sorted(dropped) == sorted(c for c in started if c != 2)
    assert len(set(dropped)) == len(dropped)
    assert [p.status for p in plans] == ["aggregated"] * 10  # the fast device carries on


def test_fedbuff_equals_fedavg_in_the_synchronous_setup():
    """Issue 24, 5(a): one class, clients = concurrency = buffer_size, equal sizes, always,
    constant staleness, server_lr 1: each server update is the sync round's timeline with one
    fresh arrival per device, and FedBuff over them equals FedAvg within 1e-6."""
    n = 6
    clock = _clock([0] * n, concurrency=n, buffer_size=n)
    rule = FedBuff(buffer_size=n, server_lr=1.0, staleness=Staleness("constant"))
    rng = np.random.default_rng(0)
    x0 = {"w": rng.normal(size=(5, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}

    def train(weights, client, version):  # a stand-in for a device's update, deterministic
        g = np.random.default_rng([client, version])
        return {k: (v + 0.1 * g.normal(size=v.shape)).astype(np.float32)
                for k, v in weights.items()}

    versions, fedavg = {0: x0}, x0
    sync = FleetClock.start(seed=0, classes=[FAST], class_index=np.zeros(n, np.int64),
                            availability="always", min_battery_pct=0.0)
    for plan in _run(clock, 8):
        rnd = sync.plan_round(plan.version, clients_per_round=n, examples=np.full(n, 100),
                              **SIZES)
        sync.apply(rnd)
        # The same timeline as the sync round: times, outcomes, bytes, energy, batteries.
        assert (plan.virtual_start_s, plan.virtual_end_s) == (rnd.virtual_start_s,
                                                              rnd.virtual_end_s)
        assert plan.outcomes == rnd.outcomes and plan.totals == rnd.totals
        assert sorted(plan.updates(), key=lambda u: u.client_id) == rnd.updates()
        assert sorted(s.client_id for s in plan.starts) == list(range(n))
        assert [e.client_id for e in plan.arrivals] == list(range(n))
        assert plan.staleness == {"mean": 0.0, "max": 0}
        trained = {s.client_id: train(versions[s.version], s.client_id, s.version)
                   for s in plan.starts}
        versions[plan.version] = server_update(rule, versions[plan.version - 1],
                                               plan.arrivals, versions, trained)
        assert rule.count == 0  # the plan's last arrival filled the buffer: it stepped
        fedavg = FedAvg().aggregate(plan.version, fedavg,
                                    [(trained[c], 100) for c in range(n)])
        for k in x0:
            assert np.abs(versions[plan.version][k] - fedavg[k]).max() < 1e-6


@pytest.mark.parametrize(("seed", "availability", "concurrency", "buffer_size", "max_staleness"),
                         [(0, "always", 5, 5, None), (1, "diurnal", 12, 4, 3),
                          (2, "diurnal", 20, 1, None), (3, "always", 3, 2, 0)])
def test_plan_update_invariants_hold_across_fleets(seed, availability, concurrency, buffer_size,
                                                    max_staleness):
    clock = _fleet_clock(n=25, concurrency=concurrency, buffer_size=buffer_size,
                         max_staleness=max_staleness, availability=availability, floor=25.0,
                         seed=seed, model_ms=20.0)
    plans = _run(clock, 15, examples=500)
    last = 0.0
    for p in plans:
        assert p.status == "aggregated" and len(p.arrivals) == buffer_size
        assert p.virtual_start_s == last and p.virtual_end_s >= last
        times = [(e.end_s, e.client_id) for e in p.ended if e.outcome != "straggler"]
        assert times == sorted(times)  # events in (time, client id) order
        assert all(last <= t <= p.virtual_end_s for t, _ in times)
        assert all(s.version == p.version - 1 and last <= s.start_s <= p.virtual_end_s
                   for s in p.starts)
        if max_staleness is not None:
            assert all(e.staleness <= max_staleness for e in p.arrivals)
        assert all(0.0 <= e.battery_pct <= 100.0 and e.energy_j >= 0 for e in p.ended)
        last = p.virtual_end_s
    spans = _intervals(plans)
    for t in sorted({s for _, s, _ in spans}):
        assert len([c for c, s, e in spans if s <= t < e]) <= concurrency
