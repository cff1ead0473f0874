"""Durations in the unit their size calls for (ms, s, min, h, days): pages, charts' axes and
tables print 42 s for a minute-long fleet, never 0.01 h."""

from __future__ import annotations

import math

# (name, seconds, below): a span under `below` seconds is told in this unit
UNITS = (("ms", 0.001, 1.0), ("s", 1.0, 120.0), ("min", 60.0, 2 * 3600.0),
         ("h", 3600.0, 3 * 86400.0), ("days", 86400.0, math.inf))


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit a span of this many seconds is read in (ms, s, min, h, days), and its size."""
    span = abs(seconds) if seconds is not None and math.isfinite(seconds) else 0.0
    for name, size, below in UNITS:
        if span < below:
            return name, size
    return UNITS[-1][0], UNITS[-1][1]  # pragma: no cover - the last bound is infinite


def duration(seconds: float | None) -> str:
    """A duration in the unit its size calls for: 850 ms, 12.5 s, 4.2 min, 3.1 h, 2.4 days."""
    if seconds is None or not math.isfinite(seconds):
        return "\u2013"
    if seconds == 0:
        return "0 s"
    name, size = time_unit(seconds)
    value = seconds / size
    return f"{value:.0f} {name}" if abs(value) >= 100 else f"{value:.3g} {name}"
