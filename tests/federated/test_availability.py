"""Availability: always, and diurnal windows checked against each device's own window list."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.federated.availability import DAY_S, HOUR_S, Always, Diurnal, make_availability

N, SEED, HORIZON = 2000, 9, 4 * DAY_S


@pytest.fixture(scope="module")
def diurnal() -> Diurnal:
    return Diurnal(N, SEED)


@pytest.fixture(scope="module")
def windows(diurnal: Diurnal) -> dict[int, list[tuple[float, float]]]:
    return {c: diurnal.windows(c, HORIZON) for c in range(0, N, 37)}


def test_always_is_always_available_and_never_charges():
    a = make_availability("always", 5, seed=0)
    assert isinstance(a, Always) and not a.charges
    assert a.available(np.arange(5), 123.0).all()
    assert np.isinf(a.window_end(np.arange(5), 1.0)).all()
    assert a.next_available(np.arange(5), 7.0) == 7.0
    assert a.windows(3, 50.0) == [(0.0, 50.0)]
    with pytest.raises(ValueError):
        make_availability("weekly", 5, seed=0)


def test_windows_are_ordered_disjoint_and_of_the_modelled_lengths(diurnal, windows):
    for c, ws in windows.items():
        assert ws, c
        for (s0, e0), (s1, _) in zip(ws, ws[1:], strict=False):
            assert s0 < e0 <= s1
        local = [((s + diurnal.tz_s[c]) % DAY_S / HOUR_S, (e - s) / HOUR_S)
                 for s, e in ws if s > 0 and e < HORIZON]
        for start_h, length_h in local:
            night = start_h >= 22 or start_h < 1
            assert (5 <= length_h <= 8) if night else (10 / 60 <= length_h <= 45 / 60)
            assert night or 10 <= start_h < 14 or 15 <= start_h < 20
    assert set(np.unique(diurnal.tz_s / HOUR_S)) <= set(range(-3, 4))


def test_availability_answers_agree_with_each_device_own_windows(diurnal, windows):
    ids = np.array(sorted(windows))
    for t in np.linspace(0.0, 3 * DAY_S, 97):
        inside = [next((e for s, e in windows[c] if s <= t < e), math.nan) for c in ids]
        assert diurnal.available(ids, t).tolist() == [not math.isnan(e) for e in inside]
        np.testing.assert_array_equal(diurnal.window_end(ids, t), inside)
        # A subset answers as its rows of the whole fleet: no dependence on who is asked.
        assert diurnal.available(ids, t).tolist() == diurnal.available(slice(None), t)[ids].tolist()


def test_next_available_is_the_first_window_start_of_the_set(diurnal, windows):
    for c in list(windows)[:10]:
        ws = windows[c]
        t = ws[1][1] + 1.0  # just after its second window closed
        expected = t if any(s <= t < e for s, e in ws) else min(s for s, _ in ws if s > t)
        assert diurnal.next_available(np.array([c]), t) == expected
    assert diurnal.next_available(np.zeros(0, dtype=np.int64), 0.0) == math.inf


def test_in_window_seconds_and_time_after_in_window_agree(diurnal, windows):
    ids = np.array(sorted(windows))
    t0 = np.full(ids.size, 5 * HOUR_S)
    t1 = 2 * DAY_S + 7 * HOUR_S
    overlap = [sum(max(0.0, min(e, t1) - max(s, t0[0])) for s, e in windows[c]) for c in ids]
    assert diurnal.in_window_seconds(ids, t0, t1) == pytest.approx(overlap, rel=1e-12)
    need = np.full(ids.size, 2 * HOUR_S)
    when = diurnal.time_after_in_window(ids, 5 * HOUR_S, need)
    for c, w in zip(ids, when, strict=True):
        got = diurnal.in_window_seconds(np.array([c]), np.array([5 * HOUR_S]), w)[0]
        assert got == pytest.approx(2 * HOUR_S, abs=1e-6)
        assert diurnal.available(np.array([c]), w)[0]


def test_one_device_history_reads_the_same_numbers_as_the_whole_day():
    fresh = Diurnal(N, SEED)  # nothing cached: windows() takes the one-device path
    days = [fresh._draw(d) for d in range(-1, 4)]  # the whole-fleet path, not cached
    for c in (0, 1, 777, N - 1):
        expected = sorted((max(s, 0.0), min(e, HORIZON)) for starts, ends in days
                          for s, e in zip(starts[:, c], ends[:, c], strict=True)
                          if math.isfinite(s) and e > 0 and s < HORIZON)
        assert fresh.windows(c, HORIZON) == expected


def test_the_same_seed_draws_the_same_windows_whatever_was_asked_before(diurnal, windows):
    fresh = Diurnal(N, SEED)
    assert fresh.windows(37, HORIZON) == windows[37]
    assert Diurnal(N, SEED + 1).windows(37, HORIZON) != windows[37]
    # Reading a long history does not disturb the days the clock is using.
    before = fresh.day(1)
    fresh.windows(5, 30 * DAY_S)
    assert fresh.day(1) is before


def test_devices_are_mostly_available_at_night_and_rarely_at_noon(diurnal):
    everyone = slice(None)
    night = diurnal.available(everyone, DAY_S + 3 * HOUR_S).mean()
    noon = diurnal.available(everyone, DAY_S + 12 * HOUR_S).mean()
    assert night > 0.6 and noon < 0.15
