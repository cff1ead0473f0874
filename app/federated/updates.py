"""One round's client updates as arrays: durations, energy, battery, how far each got.

An update has three phases run back to back: download (the global checkpoint, plus the
.tflite on the device's first participation) at down_kbps, compute (examples x
ms_per_example / 1000) and upload (its saved checkpoint) at up_kbps; sizes in bytes x 8
/ 1000 / kbps. A phase's energy is spread evenly over it: downloads and uploads cost
MB x radio_joules_per_mb (MB = 10^6 bytes), compute costs compute_s x train_watts.
The battery moves linearly within a phase (charging, if the device charges, minus that
phase's power) and is clamped to 100 %, so its lowest point is at a phase boundary and
the moment it would fall below the floor is found exactly, phase by phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PHASES = ("download", "compute", "upload")
NONE, OFFLINE, BATTERY = 0, 1, 2  # why an update stops early


@dataclass(frozen=True, eq=False)
class Updates:
    """The selected clients' updates, one row each, all starting at `start_s`."""

    start_s: float
    phase_s: np.ndarray  # [m, 3] seconds of download, compute, upload
    phase_j: np.ndarray  # [m, 3] joules of each phase
    bytes_down: np.ndarray  # [m] int64
    bytes_up: np.ndarray  # [m] int64
    charge_pct_s: np.ndarray  # [m] battery points gained per second while running
    pct_per_j: np.ndarray  # [m] battery points one joule costs
    level0: np.ndarray  # [m] battery at the start, percent

    @property
    def planned_end_s(self) -> np.ndarray:
        """When each update would end if nothing stopped it."""
        p = self.phase_s
        return self.start_s + ((p[:, 0] + p[:, 1]) + p[:, 2])


def build(start_s: float, *, bytes_down: np.ndarray, bytes_up: np.ndarray,
          examples: np.ndarray, ms_per_example: np.ndarray, down_kbps: np.ndarray,
          up_kbps: np.ndarray, train_watts: np.ndarray, radio_j_per_mb: np.ndarray,
          battery_wh: np.ndarray, charge_pct_per_hour: np.ndarray,
          level0: np.ndarray) -> Updates:
    """The updates' costs from per-client figures (arrays of one row per selected client)."""
    bytes_down = np.asarray(bytes_down, dtype=np.int64)
    bytes_up = np.asarray(bytes_up, dtype=np.int64)
    download_s = bytes_down * 8 / 1000 / down_kbps
    compute_s = np.asarray(examples, dtype=np.float64) * ms_per_example / 1000
    upload_s = bytes_up * 8 / 1000 / up_kbps
    phase_s = np.stack([download_s, compute_s, upload_s], axis=1)
    phase_j = np.stack([bytes_down / 1e6 * radio_j_per_mb, compute_s * train_watts,
                        bytes_up / 1e6 * radio_j_per_mb], axis=1)
    return Updates(start_s=float(start_s), phase_s=phase_s, phase_j=phase_j,
                   bytes_down=bytes_down, bytes_up=bytes_up,
                   charge_pct_s=np.asarray(charge_pct_per_hour, dtype=np.float64) / 3600,
                   pct_per_j=100.0 / (np.asarray(battery_wh, dtype=np.float64) * 3600),
                   level0=np.asarray(level0, dtype=np.float64))


def _rates(u: Updates, k: int) -> np.ndarray:
    """Net battery points per second during phase k."""
    d = u.phase_s[:, k]
    power = np.divide(u.phase_j[:, k], d, out=np.zeros_like(d), where=d > 0)
    return u.charge_pct_s - power * u.pct_per_j


def battery_crossing(u: Updates, min_pct: float) -> np.ndarray:
    """When each update's battery would fall below min_pct; inf where it never does."""
    level = u.level0.copy()
    t = np.full(level.size, u.start_s)
    out = np.full(level.size, math.inf)
    for k in range(len(PHASES)):
        d = u.phase_s[:, k]
        rate = _rates(u, k)
        end = level + rate * d
        falls = np.isinf(out) & (rate < 0) & (end < min_pct)
        drop = np.divide(level - min_pct, -rate, out=np.zeros_like(rate), where=rate < 0)
        out = np.where(falls, t + drop, out)
        level = np.where(rate > 0, np.minimum(end, 100.0), end)
        t = t + d
    return out


def stops(u: Updates, window_end: np.ndarray, min_pct: float) -> tuple[np.ndarray, np.ndarray]:
    """When each update ends or stops early, and why (NONE, OFFLINE or BATTERY).

    Offline: its window closes before the update ends (ending exactly at the close is in
    time). Battery: its level would fall below min_pct. Both: the earlier; a tie counts
    as offline, the cause outside the device.
    """
    planned = u.planned_end_s
    offline = np.where(window_end < planned, window_end, math.inf)
    battery = battery_crossing(u, min_pct)
    cause = np.where(offline <= battery, np.where(np.isfinite(offline), OFFLINE, NONE), BATTERY)
    when = np.where(cause == OFFLINE, offline, np.where(cause == BATTERY, battery, planned))
    return when, cause


@dataclass(frozen=True, eq=False)
class Progress:
    """What each update did by the moment it stopped."""

    energy_j: np.ndarray
    bytes_down: np.ndarray
    bytes_up: np.ndarray
    level: np.ndarray  # battery percent at the stop
    downloaded: np.ndarray  # the download phase finished (the device holds the .tflite)


def progress(u: Updates, stop_s: np.ndarray) -> Progress:
    """Energy spent, bytes moved and battery left when each update stops at stop_s."""
    elapsed = np.asarray(stop_s, dtype=np.float64) - u.start_s
    level = u.level0.copy()
    energy = np.zeros(level.size)
    before = np.zeros(level.size)
    fracs = []
    for k in range(len(PHASES)):
        d = u.phase_s[:, k]
        run = np.clip(elapsed - before, 0.0, d)
        # A phase of zero length is done as soon as the update reaches it.
        frac = np.divide(run, d, out=(elapsed >= before).astype(np.float64), where=d > 0)
        energy += frac * u.phase_j[:, k]
        rate = _rates(u, k)
        moved = level + rate * run
        level = np.where(rate > 0, np.minimum(moved, 100.0), moved)
        before = before + d
        fracs.append(frac)
    return Progress(energy_j=energy,
                    bytes_down=np.floor(fracs[0] * u.bytes_down).astype(np.int64),
                    bytes_up=np.floor(fracs[2] * u.bytes_up).astype(np.int64),
                    level=level, downloaded=fracs[0] >= 1.0)
