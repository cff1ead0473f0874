"""Printing: raw JSON for --json, readable rich text otherwise; ids are never cut."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

WIDE = 200  # width when not on a terminal and COLUMNS is unset: nothing to fit
GAP = 2  # spaces between table columns
WHOLE = 12  # cells up to this long are never wrapped
# --wide: every column of a table, however wide; set by the option's callback, per invocation
ALL_COLUMNS: ContextVar[bool] = ContextVar("ALL_COLUMNS", default=False)


def _width(stream: TextIO) -> int | None:
    """COLUMNS when set (also under test runners), else the terminal's, else WIDE."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if stream.isatty() else WIDE


def console() -> Console:
    """A console on the current stdout (looked up per call, so CliRunner captures it)."""
    return Console(file=sys.stdout, highlight=False, width=_width(sys.stdout))


def err_console() -> Console:
    """A console on the current stderr."""
    return Console(file=sys.stderr, highlight=False, width=_width(sys.stderr))


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2))


def show(ctx: typer.Context, data: Any, render: Callable[[Any], None]) -> None:
    """Print data raw with --json, else through render."""
    if ctx.obj.as_json:
        print_json(data)
    else:
        render(data)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """Print aligned `key  value` lines, skipping empty values. A value is never cut nor
    broken (an id, a link, a command stay whole to copy): one too long for the line goes on
    a line of its own under its key, and one longer still passes the terminal's width."""
    out = console()
    for key, value in pairs:
        if value is not None and value != "":
            line = f"{key:<14} {value}"
            if len(line) > out.width:
                line = f"{key}\n  {value}"
            out.print(line, markup=False, soft_wrap=True)


def _unbroken(text: str, header: bool) -> int:
    """The width a cell needs: its longest word, or all of it when it is a short value (a
    number with its unit, `8.9 s`, reads badly split; a header may wrap)."""
    if not header and len(text) <= WHOLE:
        return len(text)
    return max((len(w) for w in text.split()), default=0)


def _widths(columns: Sequence[str], cells: list[list[str]], room: int) -> list[int] | None:
    """Column widths that fit room and never split a word, or None when none do.

    Every column is at least as wide as its longest word (so an id, anywhere, stays whole)
    and its short cells;
    the space left goes first to the columns that need the least to show their longest cell.
    """
    texts = [[name, *(row[i] for row in cells)] for i, name in enumerate(columns)]
    widths = [max(_unbroken(text, header=n == 0) for n, text in enumerate(column))
              for column in texts]
    full = [max(len(text) for text in column) for column in texts]
    left = room - GAP * (len(columns) - 1) - sum(widths)
    if left < 0:
        return None
    for i in sorted(range(len(widths)), key=lambda i: full[i] - widths[i]):
        grow = min(left, full[i] - widths[i])
        widths[i] += grow
        left -= grow
    return widths


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
          drop: Sequence[str] = ()) -> None:
    """Print a table, or `(none)`. Cells wrap between words, never inside one, so ids are
    whole at any width; too narrow for that, the columns named in drop are left out, in that
    order, until it fits (--wide keeps them all), and stderr says which."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    out = console()
    if not cells:
        out.print("(none)")
        return
    keep = list(range(len(columns)))
    widths = _widths(columns, cells, out.width)
    left_out = []
    for name in [] if ALL_COLUMNS.get() else drop:
        if widths is not None:
            break
        keep.remove(list(columns).index(name))
        left_out.append(name)
        widths = _widths([columns[i] for i in keep], [[r[i] for i in keep] for r in cells],
                         out.width)
    if widths is None:  # --wide, or nothing left to drop: the longest words side by side
        widths = _widths([columns[i] for i in keep], [[r[i] for i in keep] for r in cells],
                         10**6)
        assert widths is not None
    # fixed widths: rich's own shrinking would split words, ids included
    grid = Table(box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    for i, width in zip(keep, widths, strict=True):
        grid.add_column(columns[i], width=width, overflow="fold")
    for row in cells:
        grid.add_row(*(row[i] for i in keep))
    if ALL_COLUMNS.get():
        out = Console(file=out.file, highlight=False, width=max(out.width, GAP * len(keep)
                                                                 + sum(widths)))
    out.print(grid)
    if left_out:
        err_console().print(f"(left out to fit {out.width} columns: {', '.join(left_out)}; "
                            "--wide shows every column)", markup=False)


def loss(value: float | None) -> str:
    """A loss for humans."""
    return "-" if value is None else f"{value:.4f}"


def pct(value: float | None) -> str:
    """A fraction (an accuracy, a share of clients) as a percentage for humans."""
    return "-" if value is None else f"{value:.1%}"


def seconds(value: float | None) -> str:
    """A span of (virtual) time in the unit its size calls for: `350 ms`, `57.1 s`,
    `12.5 min`, `3.2 h`, `4.5 days`. Every duration the CLI prints goes through here."""
    if value is None:
        return "-"
    for limit, unit, per in ((1, "ms", 0.001), (120, "s", 1), (7200, "min", 60),
                             (172800, "h", 3600)):
        if abs(value) < limit:
            return f"{value / per:.0f} ms" if unit == "ms" else f"{value / per:.1f} {unit}"
    return f"{value / 86400:.1f} days"


def size(n: int) -> str:
    """A byte count for humans."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}"


def when(stamp: str | None) -> str | None:
    """An RFC 3339 time stamp, trimmed to seconds."""
    return stamp[:19].replace("T", " ") + "Z" if stamp else None


def duration(item: dict[str, Any]) -> str:
    """How long a job or fleet ran, e.g. ` in 3.2 s`, or nothing."""
    if not (item.get("started_at") and item.get("finished_at")):
        return ""
    span = datetime.fromisoformat(item["finished_at"]) - datetime.fromisoformat(item["started_at"])
    return f" in {seconds(span.total_seconds())}"
