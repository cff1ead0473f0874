"""The privacy chart of a DP-FedAvg fleet's report: epsilon against rounds, and accuracy
against epsilon (what each step of the budget bought), drawn by matplotlib as SVG."""

from __future__ import annotations

from collections.abc import Sequence

from app.services.charts import BLACK, BLUE, _figure, _finite, _percent, _style, _svg


def privacy(rounds: Sequence[int], epsilon: Sequence[float | None],
            accuracy: Sequence[float | None], delta: float) -> str:
    """Two panels: epsilon at delta after each round; the accuracy reached at each epsilon."""
    fig = _figure(height=3.4)
    left = _style(fig.add_subplot(1, 2, 1), f"Privacy spent (delta {delta:g})", "round",
                  "epsilon")
    right = _style(fig.add_subplot(1, 2, 2), "Accuracy against epsilon", "epsilon",
                   "accuracy")
    spent = [(r, e) for r, e in zip(rounds, epsilon, strict=True) if _finite(e)]
    if spent:
        left.plot(*zip(*spent, strict=True), color=BLUE, marker="o", markersize=3,
                  linewidth=1.4, gid="epsilon")
    bought = [(e, a) for e, a in zip(epsilon, accuracy, strict=True)
              if _finite(e) and _finite(a)]
    if bought:
        right.plot(*zip(*bought, strict=True), color=BLACK, marker="o", markersize=3,
                   linewidth=1.4, gid="accuracy-vs-epsilon")
        _percent(right)
    if not spent:
        left.text(0.5, 0.5, "no noise: no guarantee", ha="center", va="center",
                  transform=left.transAxes)
    return _svg(fig)
