"""The virtual clock under "diurnal": windows, jumps, charging, determinism, restarts."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest

from app.federated.clock import FleetClock
from app.federated.devices import DeviceClass, parse_devices
from tests.federated.clock_helpers import (
    GLOBAL,
    MODEL,
    SLOW,
    UPDATE,
    energy,
    make_clock,
    plan,
    seconds,
)

# Charges 36 %/h (0.01 %/s) inside its windows; training 2 W costs 2 / 360 %/s.
CHARGER = DeviceClass(name="charger", ms_per_example=10.0, down_kbps=8.0, up_kbps=8.0,
                      train_watts=2.0, radio_joules_per_mb=0.0, battery_wh=10.0,
                      charge_pct_per_hour=36.0)


def long_window(device_class, seed=2):
    """The start of device 0's first window longer than 3 h."""
    probe = make_clock([0], classes=(device_class,), availability="diurnal", seed=seed)
    return next(s for s, e in probe.windows(0, 5 * 86400.0) if e - s > 3 * 3600)


def test_the_battery_stops_at_100_percent_before_training_drains_it():
    # Charging 1 %/s while downloading (no radio cost), then draining 3 %/s while training.
    hot = replace(CHARGER, train_watts=108.0, battery_wh=1.0, charge_pct_per_hour=3600.0)
    s = long_window(hot)
    clock = make_clock([0], classes=(hot,), availability="diurnal", floor=90.0, level=99.5,
                       seed=2, level_at=s)
    p = plan(clock, 1, 1, [600])
    down = seconds(GLOBAL + MODEL, 8.0)
    # Full after 0.5 s of the 4 s download; 100 - 2 %/s reaches 90 % after 5 s of compute
    # (unclamped it would have started compute at 103.5 % and lasted its 6 s).
    assert p.outcome == ("dropped_battery",)
    assert p.end_s[0] == pytest.approx(s + down + (100.0 - 90.0) / (3.0 - 1.0), rel=1e-12)
    # Draining 2 %/s instead, it completes: 100 %, -1 %/s for 6 s, +1 %/s (capped) for 2 s.
    warm = make_clock([0], classes=(replace(hot, train_watts=72.0),), availability="diurnal",
                      floor=90.0, level=99.5, seed=2, level_at=s)
    p = plan(warm, 1, 1, [600])
    assert p.outcome == ("completed",)
    assert p.battery_pct[0] == pytest.approx(100.0 - (2.0 - 1.0) * 6.0 + 1.0 * 2.0, rel=1e-12)


def test_an_update_is_dropped_when_its_window_closes_before_it_ends():
    clock = make_clock([1, 1], availability="diurnal", seed=3)
    s, e = next((s, e) for s, e in clock.windows(0, 3 * 86400.0) if e - s > 60.0)
    start = e - 5.0  # its update needs 16 s
    p = plan(clock, 1, 2, [100, 100], start_s=start)
    assert p.ids[0] == 0 and p.planned_end_s[0] == start + 16.0
    assert p.outcome[0] == "dropped_offline" and p.end_s[0] == e
    # 5 s of its 8 s download: energy and bytes pro rata.
    assert p.bytes_down[0] == math.floor(5.0 / 8.0 * (GLOBAL + MODEL))
    assert p.energy_j[0] == pytest.approx(5.0 / 8.0 * energy(SLOW, 0.0, GLOBAL + MODEL))
    assert not p.downloaded[0]


def test_the_clock_jumps_to_the_first_window_when_nobody_is_available():
    clock = make_clock([0] * 5, availability="diurnal", seed=11)
    horizon = 3 * 86400.0
    windows = [clock.windows(c, horizon) for c in range(5)]
    t = 12 * 3600.0 + 1.0
    while any(s <= t < e for w in windows for s, e in w):
        t += 600.0
    first = min(s for w in windows for s, _ in w if s > t)
    p = plan(clock, 1, 5, [10] * 5, start_s=t)
    assert p.virtual_start_s == first and p.waited_s == first - t
    assert p.eligible == sum(any(s <= first < e for s, e in w) for w in windows)


def test_the_clock_jumps_until_a_charging_device_is_above_the_floor():
    s = long_window(CHARGER)
    clock = make_clock([0], classes=(CHARGER,), availability="diurnal", floor=50.0,
                       level=45.0, seed=2, level_at=s)
    p = plan(clock, 1, 1, [10])
    # Waited until 2e-9 points above the floor (0.2 us of charging), not merely at it.
    assert p.virtual_start_s == pytest.approx(s + (50.0 - 45.0) / 36.0 * 3600, abs=1e-6)
    assert p.ids.tolist() == [0] and 50.0 < p.settled_pct[0] < 50.0 + 1e-8


def test_a_device_charged_to_exactly_the_floor_is_not_yet_eligible():
    s = long_window(CHARGER)
    clock = make_clock([0], classes=(CHARGER,), availability="diurnal", floor=50.0,
                       level=45.0, seed=2, level_at=s)
    at_floor = plan(clock, 1, 1, [10], start_s=s + 500.0)  # 0.01 %/s: 50 % exactly at 500 s
    assert clock.battery_at(s + 500.0)[0] == 50.0
    assert at_floor.waited_s > 0 and at_floor.virtual_start_s == pytest.approx(s + 500.0)
    above = plan(clock, 1, 1, [10], start_s=s + 501.0)
    assert above.waited_s == 0 and above.virtual_start_s == s + 501.0 and above.ids.tolist() == [0]


@pytest.mark.parametrize(("device_class", "floor", "level"), [
    (CHARGER, 100.0, 100.0),  # charging, but no battery goes above 100 %
    (CHARGER, 100.0, 40.0),
    (replace(CHARGER, charge_pct_per_hour=0.0), 0.0, 0.0),  # flat, and never charging
    (replace(CHARGER, charge_pct_per_hour=0.0), 30.0, 30.0),
])
def test_a_diurnal_fleet_that_can_never_be_eligible_stalls(device_class, floor, level):
    clock = make_clock([0, 0], classes=(device_class,), availability="diurnal", floor=floor,
                       level=level, seed=2)
    p = plan(clock, 1, 1, [10, 10])
    assert p.status == "stalled" and p.ids.size == 0


def test_a_device_charges_during_its_own_update_inside_a_window():
    s = long_window(CHARGER)
    clock = make_clock([0], classes=(CHARGER,), availability="diurnal", level=60.0, seed=2,
                       level_at=s)
    p = plan(clock, 1, 1, [600])
    duration = seconds(GLOBAL + MODEL, 8.0) + 600 * 10.0 / 1000 + seconds(UPDATE, 8.0)
    assert p.outcome == ("completed",) and p.end_s[0] == s + duration
    level = 60.0 + 36.0 / 3600 * duration - 2.0 * 6.0 * 100 / (10.0 * 3600)
    assert p.battery_pct[0] == pytest.approx(level, rel=1e-12)


@pytest.mark.parametrize(("level0", "capped"), [(50.0, False), (99.99, True)])
def test_batteries_charge_between_rounds_from_where_each_one_stopped(level0, capped):
    probe = make_clock([0, 0], classes=(CHARGER,), availability="diurnal", seed=8)
    t = next(t for t in np.arange(0.0, 2 * 86400.0, 300.0)
             if all(any(s <= t and t + 3600 < e for s, e in probe.windows(c, 3 * 86400.0))
                    for c in (0, 1)))
    clock = make_clock([0, 0], classes=(CHARGER,), availability="diurnal", level=level0,
                       seed=8, level_at=t)
    p = plan(clock, 1, 1, [100, 100])
    (picked,) = p.ids.tolist()
    clock.apply(p)
    assert clock.now_s == p.end_s[0] == t + 7.0
    now = clock.battery_at()
    assert now[picked] == p.battery_pct[0]  # it stopped at the round's end: nothing to add
    other = 1 - picked
    assert now[other] == (100.0 if capped else pytest.approx(level0 + 36.0 / 3600 * 7.0))


def diurnal_fleet(seed=1, n=3000, floor=30.0):
    # Small low-end batteries and long updates, so every outcome occurs.
    spec = parse_devices({"availability": "diurnal", "min_battery_pct": floor,
                          "classes": {"low_end": {"battery_wh": 0.05}}})
    return FleetClock.start(seed=seed, classes=spec.resolve(0.5), class_index=spec.draw(n, seed),
                            availability="diurnal", min_battery_pct=floor)


def run(clock, rounds, **kw):
    n = clock.n
    kw = {"clients_per_round": 20, "over_commit": 1.5, "deadline_s": 1800.0,
          "min_completed": 5, "examples": np.full(n, 20_000), "global_bytes": 3_000_000,
          "update_bytes": 3_000_000, "model_bytes": 450_000, **kw}
    plans = []
    for _ in range(rounds):
        p = clock.plan_round(clock.last_round + 1, **kw)
        clock.apply(p)
        plans.append(p)
    return plans


def test_diurnal_updates_lie_in_one_window_and_respect_the_floor():
    clock = diurnal_fleet()
    plans = run(clock, 200)
    horizon = clock.now_s
    for p in plans:
        assert (p.settled_pct[p.ids] > 30.0).all() and p.virtual_end_s > p.virtual_start_s
        for u in p.updates():
            if u.outcome in ("completed", "dropped_offline"):
                windows = clock.windows(u.client_id, horizon)
                assert any(s <= u.start_s and u.end_s <= e for s, e in windows)
            if u.outcome == "dropped_offline":
                assert any(u.end_s == e for _, e in clock.windows(u.client_id, horizon))
    # "failed" is the executor's word, never the clock's.
    counts = {o: sum(p.outcomes[o] for p in plans) for o in plans[0].outcomes if o != "failed"}
    assert min(counts.values()) > 0, counts


def test_same_inputs_give_identical_plans():
    a, b = run(diurnal_fleet(), 60), run(diurnal_fleet(), 60)
    for x, y in zip(a, b, strict=True):
        assert_same(x, y)


def test_a_restored_state_continues_identically():
    clock = diurnal_fleet()
    run(clock, 30)
    buf = io.BytesIO()
    state = clock.state()
    np.savez(buf, **{k: np.asarray(v) for k, v in state.items()})
    buf.seek(0)
    with np.load(buf) as z:
        loaded = {k: z[k] for k in z.files}
    restored = FleetClock.from_state({k: v.item() if v.ndim == 0 else v for k, v in loaded.items()})
    for x, y in zip(run(clock, 30), run(restored, 30), strict=True):
        assert_same(x, y)
    for key, value in clock.state().items():
        assert np.array_equal(np.asarray(value), np.asarray(restored.state()[key]))


def assert_same(x, y):
    assert (x.round, x.status, x.virtual_start_s, x.virtual_end_s) == \
        (y.round, y.status, y.virtual_start_s, y.virtual_end_s)
    assert x.outcome == y.outcome and x.completed == y.completed
    for name in ("ids", "start_s", "end_s", "energy_j", "bytes_down", "bytes_up", "battery_pct"):
        assert np.array_equal(getattr(x, name), getattr(y, name)), name
