"""Charts: SVG with text as text, real axes, deterministic, drawn safely from many threads."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.services import charts

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]
STEPS = range(2756, 3756)  # a session at step 3755 shows its last 1000 losses
DECAYING = [2.3 * math.exp(-i / 250) + 0.02 * (i % 7) for i in range(1000)]  # spans > 10x
ROUNDS = list(range(1, 11))
ACCURACY = [0.3 + 0.06 * r for r in ROUNDS]
DEVICES = [(f"client {i}", [(0.0, 7200.0), (30000.0, 40000.0)],
            [(60.0 * i, 600.0 + 60 * i, "completed"), (900.0, 950.0, "straggler"),
             (1000.0, 7500.0, "dropped_offline"), (31000.0, 31400.0, "dropped_battery")])
           for i in range(5)]

# Every chart: (draw it, its title, its axis labels)
CHARTS: dict[str, tuple[Callable[[], str], str, tuple[str, ...]]] = {
    "session loss": (lambda: charts.loss_chart(DECAYING, steps=STEPS, title="session s1 losses",
                                               xlabel="step"), "session s1 losses",
                     ("step", "loss")),
    "job loss": (lambda: charts.loss_chart([2.35, 2.30, None, 2.28], title="job j1",
                                           xlabel="epoch"), "job j1", ("epoch", "loss")),
    "accuracy rounds": (lambda: charts.accuracy_rounds(
        ROUNDS, ACCURACY, client_p10=[a - 0.2 for a in ACCURACY],
        client_p50=[a - 0.05 for a in ACCURACY], client_p90=[a + 0.05 for a in ACCURACY]),
        "Accuracy per round", ("round", "accuracy")),
    "personal vs global": (lambda: charts.personal_vs_global(
        [0.5, 0.6, 0.7, 0.8, None], [0.7, 0.55, 0.9, 0.8, 0.9]),
        "Personalized against global model, per client",
        ("global model's accuracy", "personalized accuracy", "fraction of clients")),
    "accuracy vs time": (lambda: charts.accuracy_vs_time(
        {"fedavg": ([1800.0 * r for r in ROUNDS], ACCURACY),  # seconds: up to 5 h
         "local": ([1080.0 * r for r in ROUNDS], [0.5] * 10)}),
        "Global accuracy against virtual time", ("virtual time (h)", "global accuracy")),
    "device timeline": (lambda: charts.device_timeline(DEVICES), "Devices on the virtual clock",
                        ("virtual time (h)", "device")),
    "outcomes per round": (lambda: charts.outcomes_per_round(
        ROUNDS, {"straggler": [1] * 10, "completed": [8] * 10, "dropped_offline": [0, 2] * 5}),
        "Client updates per round, by outcome", ("round", "client updates")),
}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def tick_groups(root: ET.Element, axis: str) -> Iterator[ET.Element]:
    return (g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith(f"{axis}tick_"))


def ticks(root: ET.Element, axis: str) -> list[tuple[str, float]]:
    """The labelled ticks of an axis: (label, position in the SVG)."""
    found = []
    for group in tick_groups(root, axis):
        label = "".join(t for text in group.iter(f"{SVG}text") for t in text.itertext())
        mark = next(group.iter(f"{SVG}use"), None)
        if label and mark is not None:
            found.append((label, float(mark.get("x" if axis == "x" else "y", "nan"))))
    return found


def gridlines(root: ET.Element, axis: str) -> int:
    """Lines drawn across the plot at the ticks (tick marks themselves sit in <defs>)."""
    return sum(1 for group in tick_groups(root, axis) for line in group.iter(f"{SVG}g")
               for child in line if child.tag == f"{SVG}path")


def value(label: str) -> float:
    return float(label.replace("\u2212", "-").rstrip("%"))


def fits(xs: list[float], ys: list[float]) -> bool:
    """Whether ys is an affine function of xs (to a hundredth of a pixel)."""
    slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    return all(abs(ys[0] + slope * (x - xs[0]) - y) < 0.01 for x, y in zip(xs, ys, strict=True))


def scale(root: ET.Element) -> str:
    """'log' or 'linear', read from where the y tick labels sit."""
    labelled = [(value(label), pos) for label, pos in ticks(root, "y")]
    assert len(labelled) >= 3, labelled
    values, positions = [v for v, _ in labelled], [p for _, p in labelled]
    if fits([math.log(v) for v in values], positions):
        return "log"
    assert fits(values, positions), labelled
    return "linear"


@pytest.mark.parametrize("name", CHARTS)
def test_every_chart_has_title_axis_labels_ticks_and_gridlines(name: str) -> None:
    draw, title, labels = CHARTS[name]
    root = parse(draw())
    words = texts(root)
    assert title in words and all(label in words for label in labels), words
    assert len(ticks(root, "x")) >= 2 and len(ticks(root, "y")) >= 2
    assert gridlines(root, "x") + gridlines(root, "y") >= 3
    glyphs = [e for e in root.iter() if e.get("id", "").startswith("DejaVu")]
    assert not glyphs  # the words are <text>, not outlines of letters
    assert "<dc:date>" not in draw()


def test_line_charts_have_gridlines_along_both_axes() -> None:
    for name in ("session loss", "job loss", "accuracy rounds", "accuracy vs time"):
        root = parse(CHARTS[name][0]())
        assert gridlines(root, "x") >= 2 and gridlines(root, "y") >= 2, name


def test_loss_chart_uses_a_log_axis_only_when_losses_span_more_than_ten_times() -> None:
    assert scale(parse(charts.loss_chart(DECAYING, title="t", xlabel="step"))) == "log"
    assert scale(parse(charts.loss_chart([2.3, 0.9, 0.4, 0.2, 0.12], title="t",
                                         xlabel="epoch"))) == "log"
    assert scale(parse(charts.loss_chart([2.3, 1.1, 0.5, 0.3], title="t",
                                         xlabel="epoch"))) == "linear"
    assert scale(parse(charts.loss_chart([2.35 - i / 1000 for i in range(1000)], title="t",
                                         xlabel="step"))) == "linear"


def test_loss_chart_shows_the_real_steps() -> None:
    root = parse(charts.loss_chart(DECAYING, steps=STEPS, title="t", xlabel="step"))
    labelled = ticks(root, "x")
    steps = [value(label) for label, _ in labelled]
    assert steps[0] == 2756 and steps[-1] == 3755 and all(2756 <= s <= 3755 for s in steps)
    assert fits(steps, [pos for _, pos in labelled])
    assert root.find(".//*[@id='raw']") is not None  # each step, faint
    assert root.find(".//*[@id='smoothed']") is not None  # and the line over them


def test_loss_chart_skips_none_and_nan_without_shifting_x() -> None:
    root = parse(charts.loss_chart([1.0, None, 3.0, math.nan, 5.0], title="t", xlabel="epoch"))
    labelled = ticks(root, "x")
    (v0, p0), (v1, p1) = [(value(lab), pos) for lab, pos in labelled][:: len(labelled) - 1]
    raw = root.find(".//*[@id='raw']")
    assert raw is not None
    dots = [float(u.get("x", "nan")) for u in raw.iter(f"{SVG}use")]
    assert [round(v0 + (x - p0) * (v1 - v0) / (p1 - p0), 3) for x in dots] == [1, 3, 5]


def test_an_empty_chart_says_no_values_yet() -> None:
    root = parse(charts.loss_chart([None, math.nan], title="session s: losses", xlabel="step"))
    assert "no values yet" in texts(root) and "session s: losses" in texts(root)
    assert "no values yet" in texts(parse(charts.loss_chart([], title="t", xlabel="epoch")))
    for empty in (charts.accuracy_rounds([], []), charts.personal_vs_global([], []),
                  charts.accuracy_vs_time({}), charts.device_timeline([]),
                  charts.outcomes_per_round([], {})):
        assert any(t.startswith("no ") and t.endswith(" yet") for t in texts(parse(empty)))


def test_fleet_charts_say_what_they_show() -> None:
    personal = texts(parse(charts.personal_vs_global([0.5, 0.6, 0.7, 0.8], [0.7, 0.5, 0.9, 0.8])))
    assert {"helped: 2 of 4", "hurt: 1 of 4", "same: 1 of 4", "global", "personalized"} <= set(
        personal)
    timeline = texts(parse(charts.device_timeline(DEVICES * 9)))
    assert {"available", "completed", "straggler", "dropped offline", "dropped battery",
            "client 0"} <= set(timeline)
    assert "Devices on the virtual clock (first 40 of 45 devices)" in timeline
    outcomes = texts(parse(CHARTS["outcomes per round"][0]()))
    legend = [t for t in outcomes if t in ("completed", "straggler", "dropped offline")]
    assert legend == ["completed", "straggler", "dropped offline"]  # always in this order
    rounds = parse(CHARTS["accuracy rounds"][0]())
    assert all(rounds.find(f".//*[@id='{gid}']") is not None for gid in ("band", "median",
                                                                          "global"))


def test_charts_are_identical_when_drawn_twice() -> None:
    for name, (draw, _, _) in CHARTS.items():
        assert draw() == draw(), name


def test_charts_draw_safely_from_four_threads_at_once() -> None:
    expected = {name: draw() for name, (draw, _, _) in CHARTS.items()}
    jobs = [name for name in CHARTS for _ in range(3)]
    with ThreadPoolExecutor(4) as pool:
        drawn = list(pool.map(lambda name: (name, CHARTS[name][0]()), jobs))
    assert all(svg == expected[name] for name, svg in drawn)


def test_charts_stay_small_and_never_load_pyplot() -> None:
    assert len(CHARTS["session loss"][0]()) < 60_000
    code = ("import sys; from app.services import charts; assert 'matplotlib' not in sys.modules; "
            "charts.loss_chart([1.0, 2.0], title='t', xlabel='x'); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0123, "12.3 ms"), (0.85, "850 ms"), (10.0, "10 s"), (60.0, "60 s"), (119.0, "119 s"),
    (250.0, "4.17 min"), (5400.0, "90 min"), (7200.0, "2 h"), (3 * 3600.0, "3 h"),
    (86400.0 * 2.5, "60 h"), (86400.0 * 4, "4 days"), (None, "\u2013")])
def test_duration_reads_in_the_unit_its_size_calls_for(seconds: float | None, text: str) -> None:
    assert charts.duration(seconds) == text


def test_time_axis_of_a_one_minute_fleet_reads_seconds() -> None:
    svg = charts.accuracy_vs_time({"a": ([10.0, 20.0, 60.0], [0.5, 0.7, 0.8])})
    labels = texts(parse(svg))
    assert "virtual time (s)" in labels and "virtual time (hours)" not in labels
    assert "60" in labels  # ticks in seconds, not 0.02 h
