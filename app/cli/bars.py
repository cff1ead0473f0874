"""Live bars that fit the terminal: the bar shrinks and the labels shorten so that a row
never passes the console's width, and the count and the elapsed time are always whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from app.cli.output import seconds

WIDEST_BAR, NARROWEST_BAR = 40, 10
ELAPSED_WIDTH = 9  # `119.9 s`, `12.5 min`: fixed, so a row does not grow as the clock turns


class Elapsed(ProgressColumn):
    """The time elapsed, in the unit its size calls for (`4.4 s`, `2.1 min`)."""

    def render(self, task: Task) -> Text:
        """The elapsed time of the task, right-aligned in a fixed width."""
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(seconds(elapsed if elapsed is not None else 0.0).rjust(ELAPSED_WIDTH),
                    style="progress.elapsed")

    def get_table_column(self) -> Column:
        """A column that never shrinks nor wraps."""
        return Column(no_wrap=True, min_width=ELAPSED_WIDTH)


def bar_column() -> BarColumn:
    """The bar itself, in basic ANSI colours: rich's defaults (rgb green when finished, over
    grey23) both fall to bright black in a 16-colour terminal, where a finished bar looks like
    an empty one."""
    return BarColumn(bar_width=WIDEST_BAR, style="bright_black", complete_style="magenta",
                     finished_style="green", pulse_style="magenta")


def live(*columns: ProgressColumn, out: Console) -> tuple[Progress, BarColumn]:
    """A Progress of a description column, the bar, then columns; and its bar column."""
    bar = bar_column()
    progress = Progress(TextColumn("{task.description:<9}"), bar, *columns, console=out)
    return progress, bar


def fit(progress: Progress, bar: BarColumn, task: TaskID,
        forms: Sequence[dict[str, Any]]) -> None:
    """Give the task the first of its forms (its fields, longest labels first) whose rows fit
    the console with a bar of at least NARROWEST_BAR, shrinking the bar to fit; the last form
    is taken if none does."""
    console = progress.console
    for n, form in enumerate(forms):
        progress.update(task, **form)
        bar.bar_width = WIDEST_BAR
        table = progress.make_tasks_table(progress.tasks)
        width = Measurement.get(console, console.options.update(width=10**4), table).maximum
        over = width - console.width
        if over <= 0:
            return
        if WIDEST_BAR - over >= NARROWEST_BAR or n == len(forms) - 1:
            bar.bar_width = max(1, WIDEST_BAR - over)
            return
