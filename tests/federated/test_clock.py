"""The virtual clock against docs/api.md's formulas under "always", with values computed by hand.

Figures are chosen so that durations are exact in binary: times compare with ==.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.federated.devices import DeviceClass
from app.federated.seeds import generator
from tests.federated.clock_helpers import (
    FAST,
    GLOBAL,
    MODEL,
    SLOW,
    UPDATE,
    energy,
    make_clock,
    plan,
    seconds,
)


def test_rounds_follow_the_formulas_and_start_where_the_previous_ended():
    clock = make_clock([0, 0, 1, 1])
    examples = [100, 200, 100, 50]
    first = plan(clock, 1, 4, examples)
    up_fast, up_slow = seconds(UPDATE, 8.0), seconds(UPDATE, 4.0)
    ends = [seconds(GLOBAL + MODEL, 8.0) + 100 * 10.0 / 1000 + up_fast,
            seconds(GLOBAL + MODEL, 8.0) + 200 * 10.0 / 1000 + up_fast,
            seconds(GLOBAL + MODEL, 4.0) + 100 * 40.0 / 1000 + up_slow,
            seconds(GLOBAL + MODEL, 4.0) + 50 * 40.0 / 1000 + up_slow]
    assert ends == [7.0, 8.0, 16.0, 14.0]
    assert (first.virtual_start_s, first.virtual_end_s) == (0.0, 16.0)
    assert first.end_s.tolist() == ends and first.start_s.tolist() == [0.0] * 4
    assert first.completed == first.aggregate == (0, 1, 2, 3)
    assert first.outcome == ("completed",) * 4
    assert first.energy_j.tolist() == pytest.approx(
        [energy(FAST, 1.0, GLOBAL + MODEL + UPDATE), energy(FAST, 2.0, GLOBAL + MODEL + UPDATE),
         energy(SLOW, 4.0, GLOBAL + MODEL + UPDATE), energy(SLOW, 2.0, GLOBAL + MODEL + UPDATE)],
        rel=1e-12)
    assert first.totals["bytes_down"] == 4 * (GLOBAL + MODEL)
    assert first.totals["bytes_up"] == 4 * UPDATE
    clock.apply(first)
    second = plan(clock, 2, 4, examples)  # no .tflite any more: only the global checkpoint
    start = 16.0
    assert second.virtual_start_s == start
    assert second.end_s.tolist() == [start + seconds(GLOBAL, 8.0) + 1.0 + up_fast,
                                     start + seconds(GLOBAL, 8.0) + 2.0 + up_fast,
                                     start + seconds(GLOBAL, 4.0) + 4.0 + up_slow,
                                     start + seconds(GLOBAL, 4.0) + 2.0 + up_slow]
    assert second.virtual_end_s == start + seconds(GLOBAL, 4.0) + 4.0 + up_slow == 26.0
    assert second.totals["bytes_down"] == 4 * GLOBAL
    clock.apply(second)
    assert clock.now_s == 26.0
    assert clock.energy_j.tolist() == pytest.approx(
        (first.energy_j + second.energy_j).tolist(), rel=1e-12)


def test_over_commitment_aggregates_the_first_to_end_and_stops_the_stragglers():
    clock = make_clock([0, 0, 1, 1])
    p = plan(clock, 1, 2, [100, 200, 100, 50], over_commit=2.0)
    assert p.ids.tolist() == [0, 1, 2, 3]  # ceil(2 x 2.0) = 4: all of them
    assert p.virtual_end_s == 8.0  # the 2nd completion (client 1)
    assert p.completed == (0, 1)
    assert p.outcome == ("completed", "completed", "straggler", "straggler")
    assert p.end_s.tolist() == [7.0, 8.0, 8.0, 8.0] and p.planned_end_s.tolist() == [7, 8, 16, 14]
    # At 8 s the slow ones have just finished downloading (8 s), nothing more.
    assert p.bytes_down.tolist() == [GLOBAL + MODEL] * 4
    assert p.bytes_up.tolist() == [UPDATE, UPDATE, 0, 0]
    assert p.energy_j[2:].tolist() == pytest.approx([energy(SLOW, 0.0, GLOBAL + MODEL)] * 2)
    assert p.downloaded.tolist() == [True] * 4


def test_selection_is_the_seeded_draw_of_ceil_k_times_over_commit():
    clock = make_clock([0] * 300, seed=5)
    p = plan(clock, 3, 100, [10] * 300, over_commit=1.1)
    # 100 x 1.1 is 110.00000000000001 in binary: the clock selects 110, not 111.
    expected = np.sort(generator(5, "selection", 3).choice(np.arange(300), 110, replace=False))
    assert p.ids.tolist() == expected.tolist()
    assert p.eligible == 300
    assert len(p.completed) == 100


def test_the_deadline_ends_the_round_and_counts_the_work_done_by_then():
    clock = make_clock([0, 0, 1, 1])
    p = plan(clock, 1, 4, [100, 200, 100, 50], deadline_s=10.0)
    assert p.virtual_end_s == 10.0
    assert p.completed == (0, 1)
    assert p.outcome[2:] == ("straggler", "straggler")
    assert p.end_s.tolist() == [7.0, 8.0, 10.0, 10.0]
    # Client 2 computed 10 - 8 = 2 s of its 4 s, client 3 2 s of 2 s; neither uploaded.
    assert p.energy_j[2:].tolist() == pytest.approx(
        [energy(SLOW, 2.0, GLOBAL + MODEL), energy(SLOW, 2.0, GLOBAL + MODEL)], rel=1e-12)
    assert p.bytes_up.tolist() == [UPDATE, UPDATE, 0, 0]


def test_an_update_ending_exactly_at_the_deadline_is_in_time():
    p = plan(make_clock([0, 1]), 1, 2, [100, 100], deadline_s=7.0)
    assert p.completed == (0,) and p.virtual_end_s == 7.0


def test_ties_go_to_the_lower_client_id():
    p = plan(make_clock([0, 0, 0]), 1, 2, [100, 100, 100], over_commit=1.5)
    assert p.planned_end_s.tolist() == [7.0, 7.0, 7.0]
    assert p.completed == (0, 1)
    assert p.outcome == ("completed", "completed", "straggler")
    assert p.end_s.tolist() == [7.0, 7.0, 7.0]


def test_a_battery_drop_happens_where_the_level_crosses_the_floor():
    tiny = DeviceClass(name="tiny", ms_per_example=10.0, down_kbps=8.0, up_kbps=8.0,
                       train_watts=1.8, radio_joules_per_mb=0.0, battery_wh=0.01,
                       charge_pct_per_hour=0.0)
    clock = make_clock([0, 1], classes=(FAST, tiny), floor=40.0, level=[100.0, 50.0])
    p = plan(clock, 1, 2, [100, 400])
    pct_per_j = 100 / (0.01 * 3600)
    down = seconds(GLOBAL + MODEL, 8.0)
    drop = down + (50.0 - 40.0) / (1.8 * pct_per_j)  # within its 4 s of compute
    assert p.outcome == ("completed", "dropped_battery")
    assert p.end_s[1] == pytest.approx(drop, rel=1e-12)
    assert p.energy_j[1] == pytest.approx((drop - down) * 1.8, rel=1e-12)
    assert p.battery_pct[1] == 40.0
    # The server does not wait for nothing: the round ends at its last event.
    assert p.virtual_end_s == 7.0 and p.completed == (0,)
    assert p.bytes_up[1] == 0 and p.downloaded[1]


def test_a_drop_that_would_come_after_the_round_ends_is_a_straggler():
    tiny = DeviceClass(name="tiny", ms_per_example=10.0, down_kbps=8.0, up_kbps=8.0,
                       train_watts=1.8, radio_joules_per_mb=0.0, battery_wh=0.01,
                       charge_pct_per_hour=0.0)
    clock = make_clock([0, 1], classes=(FAST, tiny), floor=40.0, level=[100.0, 50.0])
    p = plan(clock, 1, 2, [100, 400], deadline_s=5.0)  # its drop would come at 6 s
    assert p.outcome == ("straggler", "straggler") and p.end_s.tolist() == [5.0, 5.0]
    assert p.battery_pct[1] == pytest.approx(50.0 - 1.8 * 1.0 * 100 / (0.01 * 3600))


def test_the_tflite_counts_as_delivered_only_once_its_download_finished():
    clock = make_clock([0, 1])
    first = plan(clock, 1, 2, [100, 100], deadline_s=6.0)
    assert first.status == "abandoned" and first.outcome == ("straggler", "straggler")
    # At 6 s the fast one is uploading; the slow one has 6 of its 8 s of download.
    assert first.bytes_down.tolist() == [GLOBAL + MODEL, math.floor(6 / 8 * (GLOBAL + MODEL))]
    assert first.downloaded.tolist() == [True, False]
    clock.apply(first)
    second = plan(clock, 2, 2, [100, 100])
    assert second.bytes_down.tolist() == [GLOBAL, GLOBAL + MODEL]
    assert second.end_s.tolist() == [6.0 + seconds(GLOBAL, 8.0) + 1.0 + seconds(UPDATE, 8.0),
                                     6.0 + seconds(GLOBAL + MODEL, 4.0) + 4.0
                                     + seconds(UPDATE, 4.0)]


def test_a_device_below_the_floor_is_never_selected_and_a_fleet_of_them_stalls():
    clock = make_clock([0, 0, 0], floor=30.0, level=[29.0, 80.0, 29.999])
    for rnd in (1, 2, 3):
        p = plan(clock, rnd, 1, [100, 100, 100])
        assert p.ids.tolist() == [1]
        clock.apply(p)
    assert clock.battery_pct[[0, 2]].tolist() == [29.0, 29.999]  # "always": never charging
    stalled = plan(make_clock([0, 0], floor=50.0, level=[10.0, 20.0]), 1, 1, [1, 1])
    assert stalled.status == "stalled" and stalled.ids.size == 0


@pytest.mark.parametrize("floor", [0.0, 30.0])
def test_a_device_at_the_floor_is_not_eligible(floor):
    levels = [floor, floor + 5e-10, floor + 1e-6, floor + 40.0]  # 5e-10: within the tolerance
    p = plan(make_clock([0] * 4, floor=floor, level=levels), 1, 4, [10] * 4)
    assert p.ids.tolist() == [2, 3] and p.eligible == 2


@pytest.mark.parametrize("floor", [0.0, 30.0])
def test_a_fleet_of_batteries_at_the_floor_stalls(floor):
    # "always" never charges: a flat battery (floor 0) can never be eligible again.
    p = plan(make_clock([0, 1], floor=floor, level=[floor, floor]), 1, 1, [10, 10])
    assert p.status == "stalled" and p.ids.size == 0 and p.eligible == 0
    assert p.virtual_end_s == p.virtual_start_s == 0.0


@pytest.mark.parametrize("floor", [0.0, 30.0])
def test_a_device_drained_to_the_floor_is_not_selected_again(floor):
    tiny = DeviceClass(name="tiny", ms_per_example=10.0, down_kbps=8.0, up_kbps=8.0,
                       train_watts=1.8, radio_joules_per_mb=0.0, battery_wh=0.01,
                       charge_pct_per_hour=0.0)
    # An update costs 20 points: the first device drops in round 1, the second in round 2.
    clock = make_clock([0, 0], classes=(tiny,), floor=floor, level=[floor + 10.0, floor + 30.0])
    plans = []
    while not plans or plans[-1].status != "stalled":
        plans.append(plan(clock, len(plans) + 1, 2, [400, 400]))
        clock.apply(plans[-1])
        assert len(plans) <= 4
    assert [(p.ids.tolist(), p.outcome) for p in plans] == [
        ([0, 1], ("dropped_battery", "completed")), ([1], ("dropped_battery",)), ([], ())]
    assert all(p.virtual_end_s > p.virtual_start_s for p in plans[:-1])  # none lasts 0 s
    assert clock.battery_pct.tolist() == [floor, floor]


def test_too_few_completions_abandon_the_round_but_time_and_energy_count():
    clock = make_clock([0, 1])
    p = plan(clock, 1, 2, [100, 100], deadline_s=9.0, min_completed=2)
    assert p.status == "abandoned" and p.completed == (0,) and p.aggregate == ()
    clock.apply(p)
    assert clock.now_s == 9.0 and clock.energy_j[1] > 0


def test_a_plan_from_an_older_state_is_refused():
    clock = make_clock([0, 0])
    p = plan(clock, 1, 1, [1, 1])
    clock.apply(p)
    with pytest.raises(ValueError, match="older state"):
        clock.apply(p)
    with pytest.raises(ValueError, match="another"):
        make_clock([0, 0]).apply(plan(make_clock([0, 0]), 1, 1, [1, 1]))
    assert math.isfinite(clock.now_s)
