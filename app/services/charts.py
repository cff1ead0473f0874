"""Charts for pages people read offline: SVG drawn by matplotlib's object API (never pyplot,
which is not thread-safe), text kept as text, the same bytes for the same data."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard

# re-exported: the pages print durations as the charts' axes do
from app.services.durations import duration as duration
from app.services.durations import time_unit as time_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

WIDTH, HEIGHT = 640 / 96, 320 / 96  # inches: 640x320 CSS pixels (the SVG is written in points)
MANY = 60  # above this many points, raw values are drawn faint under a smoothed line
MAX_ROWS = 40  # devices on one timeline; more would make each row too thin to read
# Okabe-Ito colours, told apart by colour-blind readers too
BLUE, ORANGE, GREEN, RED, PURPLE, SKY, GREY, BLACK = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999999", "#000000")
SERIES = (BLUE, ORANGE, GREEN, RED, PURPLE, SKY, BLACK)
OUTCOMES = {"completed": GREEN, "straggler": ORANGE, "dropped_offline": PURPLE,
            "dropped_battery": RED, "failed": BLACK}
GRID, AVAILABLE = "#d9d9d9", "#e4e4e4"
# Global on purpose: the SVG backend reads these from rcParams, not from the figure. Set once,
# before any figure, never changed: safe for threads. Short font list: every text repeats it;
# half a pixel of path simplification is invisible and makes a 1000-step chart a third smaller.
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none", "svg.hashsalt": "fleetlite-charts", "text.parse_math": False,
    "font.size": 9.0, "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.titlesize": 10.0, "legend.fontsize": 8.0, "legend.frameon": False,
    "path.simplify_threshold": 0.5}
_setup = threading.Lock()
_configured = False

Windows = Sequence[tuple[float, float]]  # (start_s, end_s) on the virtual clock
Updates = Sequence[tuple[float, float, str]]  # (start_s, end_s, outcome)
Device = tuple[str, Windows, Updates]  # a timeline row: label, availability, updates


def _figure(width: float = WIDTH, height: float = HEIGHT) -> Figure:
    global _configured
    with _setup:
        if not _configured:  # imported here, not at start: the import costs a few hundred ms
            import matplotlib

            matplotlib.rcParams.update(RC)
            _configured = True
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> Axes:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _chart(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = _figure()
    return fig, _style(fig.add_subplot(), title, xlabel, ylabel)


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    # No date or creator: the same data gives the same bytes (cacheable, diffable)
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def _empty(fig: Figure, message: str) -> str:
    for ax in fig.axes:
        ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
                color=GREY, fontsize=11)
    return _svg(fig)


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _number(value: float, _pos: object = None) -> str:
    return f"{value:g}"


def _time_axis(ax: Axes, seconds: Sequence[float], label: str = "virtual time") -> float:
    """Label the x axis in the unit the largest time calls for; the divisor to draw with."""
    name, size = time_unit(max((s for s in seconds if _finite(s)), default=0.0))
    ax.set_xlabel(f"{label} ({name})")
    ax.xaxis.set_major_formatter(_number)
    return size


def _outcome_rank(outcome: str) -> int:
    return list(OUTCOMES).index(outcome) if outcome in OUTCOMES else len(OUTCOMES)


def _ema(values: Sequence[float], span: int) -> list[float]:
    """Exponential moving average, debiased so the start is not pulled towards zero."""
    alpha, mean, weight, out = 2 / (span + 1), 0.0, 0.0, []
    for v in values:
        mean = (1 - alpha) * mean + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(mean / weight)
    return out


def _log_y(ax: Axes, low: float, high: float) -> None:
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_yscale("log")
    # 1-2-5 labels while they fit; past two decades only the powers of ten
    subs = (1.0, 2.0, 5.0) if math.log10(high / low) <= 2 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(_number)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _integer_x(ax: Axes, first: float, last: float, pad: float) -> None:
    """Integer ticks that always include the first and the last x, which are real values."""
    from matplotlib.ticker import MaxNLocator

    span = max(last - first, 1.0)
    auto = MaxNLocator(nbins=6, integer=True).tick_values(first, last)
    ticks = sorted({first, last, *(t for t in auto
                                   if first < t < last and min(t - first, last - t) > span / 10)})
    ax.set_xticks(ticks, labels=[f"{t:.0f}" for t in ticks])
    ax.set_xlim(first - pad, last + pad)


def _percent(ax: Axes, axes: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    for axis in axes:
        getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(1.0, decimals=0))


def loss_chart(losses: Sequence[float | None], *, steps: Sequence[int] | None = None,
               title: str, xlabel: str = "step", ylabel: str = "loss") -> str:
    """Losses at their real steps (default 1..n): faint raw values under a smoothed line."""
    xs = list(range(1, len(losses) + 1)) if steps is None else list(steps)
    if len(xs) != len(losses):
        raise ValueError(f"{len(losses)} losses but {len(xs)} steps")
    fig, ax = _chart(title, xlabel, ylabel)
    points = [(x, float(v)) for x, v in zip(xs, losses, strict=True) if _finite(v)]
    if not points:
        return _empty(fig, "no values yet")
    x, y = [p[0] for p in points], [p[1] for p in points]
    if len(points) > MANY:
        span = min(max(len(points) // 20, 5), 200)
        ax.plot(x, y, color=BLUE, alpha=0.3, linewidth=0.7, label="each step", gid="raw")
        ax.plot(x, _ema(y, span), color=BLUE, linewidth=1.8, gid="smoothed",
                label=f"moving average (~{span} steps)")
        ax.legend(loc="best")
    else:
        ax.plot(x, y, color=BLUE, linewidth=1.5, marker="o", markersize=4, gid="raw")
    if min(y) > 0 and max(y) / min(y) > 10:
        _log_y(ax, min(y), max(y))
    _integer_x(ax, x[0], x[-1], pad=0.5 if len(points) <= MANY else (x[-1] - x[0]) / 100)
    return _svg(fig)


def accuracy_rounds(rounds: Sequence[int], global_accuracy: Sequence[float | None], *,
                    client_p10: Sequence[float | None] | None = None,
                    client_p50: Sequence[float | None] | None = None,
                    client_p90: Sequence[float | None] | None = None,
                    title: str = "Accuracy per round") -> str:
    """The global model's test accuracy per round over the clients' p10..p90 band and median."""
    fig, ax = _chart(title, "round", "accuracy")
    none: list[None] = [None] * len(rounds)
    band = [(r, lo, mid, hi) for r, lo, mid, hi in zip(
        rounds, client_p10 or none, client_p50 or none, client_p90 or none, strict=True)
        if _finite(lo) and _finite(mid) and _finite(hi)]
    if band:
        r, lo, mid, hi = (list(column) for column in zip(*band, strict=True))
        ax.fill_between(r, lo, hi, color=SKY, alpha=0.35, linewidth=0, gid="band",
                        label="clients' held-out, p10-p90")
        ax.plot(r, mid, color=BLUE, linestyle="--", linewidth=1.2, gid="median",
                label="clients' held-out, median")
    points = [(r, a) for r, a in zip(rounds, global_accuracy, strict=True) if _finite(a)]
    if points:
        ax.plot(*zip(*points, strict=True), color=BLACK, marker="o", markersize=3.5,
                linewidth=1.6, gid="global", label="global model, test set", clip_on=False)
    if not (band or points):
        return _empty(fig, "no rounds yet")
    _percent(ax)
    _integer_x(ax, min(rounds), max(rounds), pad=0.3)
    ax.legend(loc="lower right")
    return _svg(fig)


def personal_vs_global(acc_global: Sequence[float | None], acc_personal: Sequence[float | None],
                       *, title: str = "Personalized against global model, per client") -> str:
    """Two panels: each client's personal vs global accuracy with the diagonal, and both CDFs."""
    fig = _figure(WIDTH * 1.3, HEIGHT * 1.15)
    fig.suptitle(title)
    left, right = fig.subplots(1, 2)
    _style(left, "each dot a client", "global model's accuracy", "personalized accuracy")
    _style(right, "distribution over clients", "accuracy on own held-out examples",
           "fraction of clients")
    pairs = [(g, p) for g, p in zip(acc_global, acc_personal, strict=True)
             if _finite(g) and _finite(p)]
    if not pairs:
        return _empty(fig, "no clients yet")
    left.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1, label="no change")
    for sign, name, colour in ((1, "helped", GREEN), (-1, "hurt", RED), (0, "same", GREY)):
        chosen = [(g, p) for g, p in pairs if (p > g) - (p < g) == sign]
        if chosen:
            left.scatter(*zip(*chosen, strict=True), s=12, color=colour, gid=f"clients-{name}",
                         label=f"{name}: {len(chosen)} of {len(pairs)}", clip_on=False)
    left.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    left.legend(loc="lower right")
    steps = [0.0, *((i + 1) / len(pairs) for i in range(len(pairs))), 1.0]
    for idx, name, colour in ((0, "global", BLACK), (1, "personalized", GREEN)):
        right.step([0.0, *sorted(pair[idx] for pair in pairs), 1.0], steps, where="post",
                   color=colour, linewidth=1.6, label=name, gid=f"cdf-{name}")
    right.set(xlim=(0, 1), ylim=(0, 1))
    right.legend(loc="upper left")
    _percent(left, "xy")
    _percent(right, "xy")
    return _svg(fig)


def accuracy_vs_time(series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]], *,
                     title: str = "Global accuracy against virtual time",
                     ylabel: str = "global accuracy", width: float = WIDTH) -> str:
    """Accuracy against virtual seconds (the axis in the unit they call for), one line per
    labelled fleet; `width` in inches (a page's full width: twice the default)."""
    fig = _figure(width)
    ax = _style(fig.add_subplot(), title, "virtual time", ylabel)
    size = _time_axis(ax, [s for seconds, _ in series.values() for s in seconds])
    drawn = 0
    for i, (label, (seconds, accuracy)) in enumerate(series.items()):
        points = [(t / size, a) for t, a in zip(seconds, accuracy, strict=True) if _finite(a)]
        if points:
            ax.plot(*zip(*points, strict=True), color=SERIES[i % len(SERIES)], linewidth=1.5,
                    marker="o" if len(points) <= MANY else "", markersize=3, label=label,
                    gid=f"series-{i}", clip_on=False)
            drawn += 1
    if not drawn:
        return _empty(fig, "no rounds yet")
    ax.set_xlim(left=0)
    _percent(ax)
    ax.legend(loc="lower right")
    return _svg(fig)


def device_timeline(devices: Sequence[Device], *,
                    title: str = "Devices on the virtual clock",
                    span: tuple[float, float] | None = None) -> str:
    """One row per device: availability windows as light bars, updates coloured by outcome;
    `span` (virtual seconds) frames one stretch of the clock, such as one round."""
    shown = devices[:MAX_ROWS]
    if len(devices) > len(shown):
        title = f"{title} (first {len(shown)} of {len(devices)} devices)"
    fig = _figure(width=WIDTH * 1.5, height=max(HEIGHT, 1.3 + 0.2 * len(shown)))
    ax = _style(fig.add_subplot(), title, "virtual time", "device")
    if not shown:
        return _empty(fig, "no devices yet")
    from matplotlib.patches import Patch

    ends = [e for _, _, updates in shown for _, e, _ in updates]
    size = _time_axis(ax, [span[1]] if span else
                      ends or [e for _, windows, _ in shown for _, e in windows])
    seen: dict[str, str] = {}
    for row, (_label, windows, updates) in enumerate(shown):
        ax.broken_barh([(s / size, (e - s) / size) for s, e in windows], (row - 0.4, 0.8),
                       facecolors=AVAILABLE, gid=f"available-{row}")
        for outcome in dict.fromkeys(u[2] for u in updates):
            colour = seen.setdefault(outcome, OUTCOMES.get(outcome, BLACK))
            # an edge as wide as a line keeps seconds-long updates visible on an hours-long axis
            ax.broken_barh([(s / size, (e - s) / size) for s, e, o in updates if o == outcome],
                           (row - 0.25, 0.5), facecolors=colour, edgecolors=colour,
                           linewidth=0.8, gid=f"updates-{row}-{outcome}")
    ax.set_yticks(range(len(shown)), labels=[d[0] for d in shown])
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the first device on top
    if span:
        ax.set_xlim(span[0] / size, span[1] / size)
    elif ends:  # availability runs for days; the updates are what the reader came for
        ax.set_xlim(0, max(ends) / size * 1.02)
    else:
        ax.set_xlim(left=0)
    ax.grid(False, axis="y")
    handles = [Patch(color=AVAILABLE, label="available"),
               *(Patch(color=seen[o], label=o.replace("_", " "))
                 for o in sorted(seen, key=_outcome_rank))]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return _svg(fig)


def outcomes_per_round(rounds: Sequence[int], outcomes: Mapping[str, Sequence[int]], *,
                       title: str = "Client updates per round, by outcome") -> str:
    """Stacked bars per round: completed, straggled and dropped updates."""
    fig, ax = _chart(title, "round", "client updates")
    if not rounds:
        return _empty(fig, "no rounds yet")
    bottom = [0] * len(rounds)
    for name in sorted(outcomes, key=_outcome_rank):
        counts = list(outcomes[name])
        ax.bar(rounds, counts, bottom=bottom, width=0.8, color=OUTCOMES.get(name, GREY),
               label=name.replace("_", " "), gid=f"outcome-{name}")
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _integer_x(ax, min(rounds), max(rounds), pad=0.6)
    ax.grid(False, axis="x")
    fig.legend(loc="outside right upper")
    return _svg(fig)
