"""When each simulated device may train: always, or inside seeded daily windows (diurnal).

Android runs background work such as a federated update only while its constraints hold
(WorkManager: charging, idle, unmetered network) and stops it when one stops holding.
Google's production system trains only under those conditions and sees participation
follow the local night (Bonawitz et al. 2019, "Towards Federated Learning at Scale");
FLASH's 136k-device trace counts a device as ready when it is locked, charging and on
Wi-Fi. The diurnal model gives each device, in its own time zone, per local day:
- a night window (charging on the nightstand, on home Wi-Fi) with probability 0.9,
  starting uniformly in 22:00-01:00 local and lasting uniformly 5-8 h;
- two short daytime windows, each with probability 0.3: one starting in 10:00-14:00,
  one in 15:00-20:00, each lasting uniformly 10-45 min.
Time zones are whole hours, uniform in [-3, +3] around virtual time 0 = midnight of
zone 0: a regional fleet, so the fleet as a whole still sees day and night. Every
number here is a modelling assumption shaped by those sources, not a fitted trace.

A day's windows are drawn for all devices at once, from a generator seeded by
(seed, "windows", day + 1) (the night before day 0 belongs to day -1), so any day can
be computed on demand and a device's windows never depend on which others were asked
about. A device's windows never overlap: day windows end by 20:45, nights start at
22:00 and end by 09:00 the next day, before its first daytime window at 10:00.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Protocol

import numpy as np

from app.federated.seeds import generator

DAY_S = 86400.0
HOUR_S = 3600.0
TZ_HOURS = 3
# (probability, start from, start to, length from, length to), hours of the local day,
# in the order the windows come within a day.
WINDOWS = ((0.3, 10.0, 14.0, 10 / 60, 45 / 60),
           (0.3, 15.0, 20.0, 10 / 60, 45 / 60),
           (0.9, 22.0, 25.0, 5.0, 8.0))
# A local day's windows lie within [LO_S, HI_S] of UTC day start (time zones included).
LO_S = (WINDOWS[0][1] - TZ_HOURS) * HOUR_S
HI_S = (WINDOWS[-1][2] + WINDOWS[-1][4] + TZ_HOURS) * HOUR_S
FIRST_DAY = -1  # the earliest day whose windows reach past virtual time 0
HORIZON_DAYS = 400  # searches forward give up (answer inf) after this many days
CACHE_DAYS = 4

Ids = np.ndarray | slice


class Availability(Protocol):
    """The interface of both kinds; ids index devices, times are virtual seconds."""

    kind: str
    charges: bool  # whether a device charges inside its windows

    def available(self, ids: Ids, t: float) -> np.ndarray: ...
    def window_end(self, ids: Ids, t: float) -> np.ndarray: ...
    def next_available(self, ids: Ids, t: float) -> float: ...
    def in_window_seconds(self, ids: Ids, t0: np.ndarray, t1: float) -> np.ndarray: ...
    def time_after_in_window(self, ids: Ids, t: float, need_s: np.ndarray) -> np.ndarray: ...
    def windows(self, client: int, until_s: float) -> list[tuple[float, float]]: ...


def make_availability(kind: str, n_clients: int, seed: int) -> Availability:
    """The availability model of a fleet: "always" or "diurnal"."""
    if kind == "always":
        return Always(n_clients)
    if kind == "diurnal":
        return Diurnal(n_clients, seed)
    raise ValueError(f"unknown availability {kind!r}")


class Always:
    """Every device is available all the time and never charges."""

    kind = "always"
    charges = False

    def __init__(self, n_clients: int) -> None:
        self.n = n_clients

    def _size(self, ids: Ids) -> int:
        return self.n if isinstance(ids, slice) else len(ids)

    def available(self, ids: Ids, t: float) -> np.ndarray:
        """True for every device asked about."""
        return np.ones(self._size(ids), dtype=bool)

    def window_end(self, ids: Ids, t: float) -> np.ndarray:
        """The one window never ends: inf."""
        return np.full(self._size(ids), math.inf)

    def next_available(self, ids: Ids, t: float) -> float:
        """t itself (inf for an empty set)."""
        return t if self._size(ids) else math.inf

    def in_window_seconds(self, ids: Ids, t0: np.ndarray, t1: float) -> np.ndarray:
        """All of [t0, t1] is inside the window."""
        return np.maximum(t1 - np.asarray(t0, dtype=np.float64), 0.0)

    def time_after_in_window(self, ids: Ids, t: float, need_s: np.ndarray) -> np.ndarray:
        """t + need_s."""
        return t + np.asarray(need_s, dtype=np.float64)

    def windows(self, client: int, until_s: float) -> list[tuple[float, float]]:
        """One window over [0, until_s]."""
        return [(0.0, float(until_s))] if until_s > 0 else []


class Diurnal:
    """Seeded daily windows per device; days are drawn on demand and a few are cached.

    Not thread-safe (the day cache): one owner, the fleet's driver.
    """

    kind = "diurnal"
    charges = True

    def __init__(self, n_clients: int, seed: int) -> None:
        self.n = n_clients
        self.seed = seed
        hours = generator(seed, "time_zone").integers(-TZ_HOURS, TZ_HOURS + 1, size=n_clients)
        self.tz_s = hours.astype(np.float64) * HOUR_S
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def day(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """Window starts and ends (UTC seconds, shape [3, n], inf when absent) of a local day."""
        hit = self._cache.get(day)
        if hit is not None:
            self._cache.move_to_end(day)
            return hit
        self._cache[day] = self._draw(day)
        if len(self._cache) > CACHE_DAYS:
            self._cache.popitem(last=False)
        return self._cache[day]

    def _draw(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        u = generator(self.seed, "windows", day - FIRST_DAY).random((3 * len(WINDOWS), self.n))
        return self._shape(day, u, self.tz_s)

    def _draw_one(self, day: int, client: int) -> tuple[np.ndarray, np.ndarray]:
        """One device's column of `_draw(day)`, without drawing the other devices."""
        gen = generator(self.seed, "windows", day - FIRST_DAY)
        bits = gen.bit_generator
        assert isinstance(bits, np.random.PCG64)
        u = np.empty((3 * len(WINDOWS), 1))
        taken = 0
        for row in range(u.shape[0]):
            # random((rows, n)) takes one 64-bit PCG64 output per double, row after row,
            # so the device's number in a row is output row * n + client.
            bits.advance(row * self.n + client - taken)
            u[row, 0] = gen.random()
            taken = row * self.n + client + 1
        return self._shape(day, u, self.tz_s[client:client + 1])

    @staticmethod
    def _shape(day: int, u: np.ndarray, tz_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows from the day's uniform draws u [9, m] for devices with offsets tz_s [m]."""
        midnight = day * DAY_S - tz_s  # each device's local midnight, in virtual time
        # Window-major [3, m]: combining a device's three windows is then elementwise
        # across rows, far faster than reducing a length-3 axis per device.
        starts = np.full((len(WINDOWS), tz_s.size), math.inf)
        ends = np.full((len(WINDOWS), tz_s.size), math.inf)
        for w, (p, s0, s1, l0, l1) in enumerate(WINDOWS):
            here = u[3 * w] < p
            start = midnight + (s0 + (s1 - s0) * u[3 * w + 1]) * HOUR_S
            length = (l0 + (l1 - l0) * u[3 * w + 2]) * HOUR_S
            starts[w, here] = start[here]
            ends[w, here] = start[here] + length[here]
        starts.flags.writeable = ends.flags.writeable = False
        return starts, ends

    def _rows(self, day: int, ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.day(day)
        return starts[:, ids], ends[:, ids]

    def _size(self, ids: Ids) -> int:
        return self.n if isinstance(ids, slice) else len(ids)

    @staticmethod
    def _days(t0: float, t1: float) -> range:
        first = max(FIRST_DAY, math.floor((t0 - HI_S) / DAY_S))
        return range(first, math.floor((t1 - LO_S) / DAY_S) + 1)

    def available(self, ids: Ids, t: float) -> np.ndarray:
        """Whether each device is inside one of its windows at t (start <= t < end)."""
        out = np.zeros(self._size(ids), dtype=bool)
        for d in self._days(t, t):
            starts, ends = self._rows(d, ids)
            out |= ((starts <= t) & (t < ends)).any(axis=0)
        return out

    def window_end(self, ids: Ids, t: float) -> np.ndarray:
        """The end of the window containing t for each device; NaN where none does."""
        out = np.full(self._size(ids), math.nan)
        for d in self._days(t, t):
            starts, ends = self._rows(d, ids)
            inside = (starts <= t) & (t < ends)
            out = np.where(inside.any(axis=0), np.where(inside, ends, -math.inf).max(axis=0), out)
        return out

    def next_available(self, ids: Ids, t: float) -> float:
        """The first moment >= t at which any of the devices is available; inf if none."""
        if self._size(ids) == 0:
            return math.inf
        if self.available(ids, t).any():
            return t
        best = math.inf
        first = self._days(t, t).start
        for d in range(first, first + HORIZON_DAYS):
            if d * DAY_S + LO_S > best:
                break  # no later day can start earlier
            starts = self._rows(d, ids)[0]
            later = starts[starts > t]
            if later.size:
                best = min(best, float(later.min()))
        return best

    def in_window_seconds(self, ids: Ids, t0: np.ndarray, t1: float) -> np.ndarray:
        """Seconds each device spends inside its windows between its own t0 and t1."""
        t0 = np.asarray(t0, dtype=np.float64)
        total = np.zeros(self._size(ids))
        if total.size == 0:
            return total
        for d in self._days(float(t0.min()), t1):
            starts, ends = self._rows(d, ids)
            inside = np.minimum(ends, t1) - np.maximum(starts, t0)
            total += np.maximum(inside, 0.0).sum(axis=0)
        return total

    def time_after_in_window(self, ids: Ids, t: float, need_s: np.ndarray) -> np.ndarray:
        """The moment each device has spent need_s seconds inside windows after t (inf: never)."""
        remaining = np.array(need_s, dtype=np.float64)
        out = np.full(remaining.size, math.inf)
        pending = np.ones(remaining.size, dtype=bool)
        first = self._days(t, t).start
        for d in range(first, first + HORIZON_DAYS):
            if not pending.any():
                break
            starts, ends = self._rows(d, ids)
            for w in range(len(WINDOWS)):
                here = np.isfinite(starts[w])
                begin = np.maximum(np.where(here, starts[w], 0.0), t)
                room = np.maximum(np.where(here, ends[w], 0.0) - begin, 0.0)
                # Strictly inside: reaching the need exactly at a window's end means the
                # device is unavailable at that moment, so it waits for its next window.
                done = pending & (remaining < room)
                out[done] = begin[done] + remaining[done]
                pending &= ~done
                remaining = np.where(pending, remaining - room, remaining)
        return out

    def windows(self, client: int, until_s: float) -> list[tuple[float, float]]:
        """One device's windows clipped to [0, until_s], in order."""
        out = []
        for d in self._days(0.0, until_s):
            # Days outside the cache are drawn for this device alone and not cached, so
            # that reading one client's history neither costs whole days nor evicts the
            # days the clock is working on.
            hit = self._cache.get(d)
            starts, ends = (hit[0][:, [client]], hit[1][:, [client]]) if hit else \
                self._draw_one(d, client)
            for s, e in zip(starts[:, 0], ends[:, 0], strict=True):
                if math.isfinite(s) and e > 0 and s < until_s:
                    out.append((max(float(s), 0.0), min(float(e), float(until_s))))
        return out
