"""Shared figures and helpers of the clock tests: classes whose durations are exact in binary."""

from __future__ import annotations

import numpy as np

from app.federated.clock import FleetClock
from app.federated.devices import DeviceClass

GLOBAL, MODEL, UPDATE = 1000, 3000, 2000  # bytes: global checkpoint, .tflite, saved checkpoint
FAST = DeviceClass(name="fast", ms_per_example=10.0, down_kbps=8.0, up_kbps=8.0, train_watts=2.0,
                   radio_joules_per_mb=500.0, battery_wh=10.0, charge_pct_per_hour=0.0)
SLOW = DeviceClass(name="slow", ms_per_example=40.0, down_kbps=4.0, up_kbps=4.0, train_watts=1.0,
                   radio_joules_per_mb=250.0, battery_wh=10.0, charge_pct_per_hour=0.0)


def make_clock(class_index, *, classes=(FAST, SLOW), availability="always", floor=0.0,
               level=100.0, seed=0, level_at=0.0) -> FleetClock:
    """A clock with chosen batteries (level at virtual time level_at), nobody served yet."""
    n = len(class_index)
    return FleetClock(seed=seed, classes=classes, class_index=np.array(class_index),
                      availability=availability, min_battery_pct=floor,
                      battery_pct=np.broadcast_to(np.asarray(level, dtype=float), (n,)),
                      battery_t=np.full(n, level_at), participated=np.zeros(n, bool),
                      energy_j=np.zeros(n), now_s=level_at)


def plan(clock, rnd, cpr, examples, **kw):
    """Plan round rnd with the test's byte sizes."""
    kw = {"global_bytes": GLOBAL, "update_bytes": UPDATE, "model_bytes": MODEL, **kw}
    return clock.plan_round(rnd, clients_per_round=cpr, examples=np.asarray(examples), **kw)


def seconds(nbytes, kbps):
    """docs/api.md: bytes x 8 / 1000 / kbps."""
    return nbytes * 8 / 1000 / kbps


def energy(c, compute_s, bytes_moved):
    """docs/api.md: compute_s x train_watts + MB moved x radio_joules_per_mb."""
    return compute_s * c.train_watts + bytes_moved / 1e6 * c.radio_joules_per_mb
