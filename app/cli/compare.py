"""`fleets compare`: fleets side by side, as the compare page's table, by name where they
have one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli.api import fail
from app.cli.output import fields, pct, seconds, show, table
from app.cli.resources import Wide
from app.cli.state import api

COLUMNS = ("fleet", "status", "strategy", "deadline", "over-commit", "rounds", "virtual time",
           "final acc", "best acc", "to 90%", "completed", "stragglers", "dropped",
           "energy kJ")
# left out first to fit the terminal: the costs, then the settings, then the second accuracy
DROP = ("energy kJ", "dropped", "stragglers", "completed", "over-commit", "deadline", "status",
        "to 90%", "best acc", "strategy")


def label(f: dict[str, Any]) -> str:
    """A fleet's name where it has one, else its id."""
    return str(f.get("name") or (f.get("settings") or {}).get("name") or f["fleet_id"])


def compare_row(f: dict[str, Any]) -> tuple[Any, ...]:
    """One fleet's row."""
    s, st = f["summary"], f["settings"]
    u = s.get("updates") or {}
    hours = s.get("virtual_hours")
    virtual = s.get("virtual_seconds", None if hours is None else hours * 3600)
    deadline = st.get("round_deadline_s")
    energy = s.get("energy_j")
    return (label(f), f["status"], (st.get("strategy") or {}).get("name", "-"),
            "-" if deadline is None else seconds(deadline), st.get("over_commit") or "-",
            s["rounds"], seconds(virtual),
            pct(s.get("final_accuracy")), pct(s.get("best_accuracy")),
            seconds((s.get("time_to_accuracy") or {}).get("90%")), u.get("completed", "-"),
            u.get("straggler", "-"),
            u.get("dropped_offline", 0) + u.get("dropped_battery", 0) if u else "-",
            "-" if energy is None else f"{energy / 1000:.1f}")


def render_compare(ctx: typer.Context, data: dict[str, Any], ids: list[str]) -> None:
    """The table, a line for each named fleet's id, and the page with the chart."""
    fleets = data["fleets"]
    table(COLUMNS, [compare_row(f) for f in fleets], DROP)
    fields([(label(f), f["fleet_id"]) for f in fleets if label(f) != f["fleet_id"]])
    fields([("chart", api(ctx).absolute(f"/v1/fleets/compare.html?ids={','.join(ids)}"))])


def fleets_compare(
    ctx: typer.Context,
    fleet_ids: Annotated[list[str], typer.Argument(help="Two or more fleet ids.")],
    wide: Wide = False,
) -> None:
    """Fleets side by side: settings, accuracy, virtual time, the virtual time to 90% of the
    best accuracy, outcomes and energy (to fit: energy, outcomes, settings left out first)."""
    if len(fleet_ids) < 2:
        fail("give two or more fleet ids to compare")
    data = api(ctx).json("GET", "/v1/fleets/compare", params={"ids": ",".join(fleet_ids)})
    show(ctx, data, lambda d: render_compare(ctx, d, fleet_ids))
