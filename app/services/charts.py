"""Loss curves as small self-contained SVG images (no plotting library needed)."""

from __future__ import annotations

import math
from html import escape

W, H, PAD = 640, 320, 48


def line_chart(values: list[float], *, title: str, xlabel: str, ylabel: str = "loss") -> str:
    """An SVG line chart of values against their 1-based index."""
    pts = [(i + 1, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">'
            f'<rect width="{W}" height="{H}" fill="white"/>'
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>')
    if not pts:
        return head + (f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#888">'
                       "no values yet</text></svg>")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > min(0.0, min(ys)) else 1.0

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(y: float) -> float:
        return H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)

    poly = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#1f77b4"/>'
                   for x, y in pts) if len(pts) <= 60 else ""
    axes = (f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>'
            f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
            f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{escape(xlabel)}</text>'
            f'<text x="14" y="{H / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {H / 2})">{escape(ylabel)}</text>'
            f'<text x="{PAD - 6}" y="{sy(y1) + 4:.1f}" text-anchor="end">{y1:.3g}</text>'
            f'<text x="{PAD - 6}" y="{sy(y0) + 4:.1f}" text-anchor="end">{y0:.3g}</text>'
            f'<text x="{sx(x0):.1f}" y="{H - PAD + 16}" text-anchor="middle">{x0}</text>'
            f'<text x="{sx(x1):.1f}" y="{H - PAD + 16}" text-anchor="middle">{x1}</text>')
    line = f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{poly}"/>'
    return head + axes + line + dots + "</svg>"
