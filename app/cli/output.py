"""Printing: raw JSON for --json, readable rich text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

WIDE = 200  # width when not on a terminal, so ids in tables are never cut or folded


def console() -> Console:
    """A console on the current stdout (looked up per call, so CliRunner captures it)."""
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else WIDE)


def err_console() -> Console:
    """A console on the current stderr."""
    return Console(file=sys.stderr, highlight=False,
                   width=None if sys.stderr.isatty() else WIDE)


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
    """Print aligned `key  value` lines, skipping empty values."""
    out = console()
    for key, value in pairs:
        if value is not None and value != "":
            out.print(f"{key:<14} {value}", markup=False, soft_wrap=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table, or `(none)` when there are no rows."""
    grid = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    console().print(grid if grid.row_count else "(none)")


def show_page(ctx: typer.Context, page: dict[str, Any], columns: Sequence[str],
              row: Callable[[dict[str, Any]], Sequence[Any]]) -> None:
    """Print one page of a list; mention the cursor of the next page if there is one."""
    if ctx.obj.as_json:
        print_json(page)
        return
    table(columns, (row(item) for item in page["items"]))
    if page.get("next_cursor"):
        err_console().print(f"more: pass --cursor {page['next_cursor']}", markup=False)


def loss(value: float | None) -> str:
    """A loss for humans."""
    return "-" if value is None else f"{value:.4f}"


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
