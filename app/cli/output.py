"""Printing: raw JSON for --json, readable rich text otherwise; ids are never cut."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

WIDE = 200  # width when not on a terminal and COLUMNS is unset: nothing to fit
GAP = 2  # spaces between table columns


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
    """Print aligned `key  value` lines, skipping empty values; long values are never cut."""
    out = console()
    for key, value in pairs:
        if value is not None and value != "":
            out.print(f"{key:<14} {value}", markup=False, soft_wrap=True)


def _widths(columns: Sequence[str], cells: list[list[str]], room: int) -> list[int] | None:
    """Column widths that fit room and never split a word, or None when none do.

    Every column is at least as wide as its longest word (so an id, anywhere, stays whole);
    the space left goes first to the columns that need the least to show their longest cell.
    """
    texts = [[name, *(row[i] for row in cells)] for i, name in enumerate(columns)]
    widths = [max(len(w) for text in column for w in text.split() or [""]) for column in texts]
    full = [max(len(text) for text in column) for column in texts]
    left = room - GAP * (len(columns) - 1) - sum(widths)
    if left < 0:
        return None
    for i in sorted(range(len(widths)), key=lambda i: full[i] - widths[i]):
        grow = min(left, full[i] - widths[i])
        widths[i] += grow
        left -= grow
    return widths


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table, or `(none)`. Cells wrap between words, never inside one, so ids are
    whole at any width; too narrow for that, one block of `key  value` lines per row."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    out = console()
    if not cells:
        out.print("(none)")
        return
    widths = _widths(columns, cells, out.width)
    if widths is None:
        for n, row in enumerate(cells):
            if n:
                out.print()
            fields(zip(columns, row, strict=True))
        return
    # fixed widths: rich's own shrinking would split words, ids included
    grid = Table(box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    for name, width in zip(columns, widths, strict=True):
        grid.add_column(name, width=width, overflow="fold")
    for row in cells:
        grid.add_row(*row)
    out.print(grid)


def loss(value: float | None) -> str:
    """A loss for humans."""
    return "-" if value is None else f"{value:.4f}"


def pct(value: float | None) -> str:
    """A fraction (an accuracy, a share of clients) as a percentage for humans."""
    return "-" if value is None else f"{value:.1%}"


def seconds(value: float | None) -> str:
    """A span of (virtual) time for humans: `42.0 s`, `12.5 min`, `3.20 h`."""
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.2f} h"


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
    return f" in {span.total_seconds():.1f} s"
