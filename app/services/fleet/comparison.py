"""What-if: several fleets side by side, accuracy against virtual time and their summaries,
so a team sees what a shorter deadline or more over-commitment buys."""

from __future__ import annotations

from html import escape
from typing import Any

from app.errors import InvalidInput, NotFound
from app.services import charts
from app.services.context import Context
from app.services.fleet import record
from app.services.fleet import rows as fleet_rows
from app.services.keyring import Principal

MAX_FLEETS = 16


def compare(ctx: Context, who: Principal, ids: list[str]) -> dict[str, Any]:
    """Each fleet's accuracy over virtual hours and its summary (404 for any the caller
    cannot see, as for a missing one)."""
    if not 2 <= len(ids) <= MAX_FLEETS:
        raise InvalidInput(f"ids: give 2 to {MAX_FLEETS} fleet ids, comma-separated")
    out = []
    for fleet_id in ids:
        row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
        if not who.may_see(row.user_id):
            raise NotFound(f"fleet '{fleet_id}' not found")
        rounds = list(fleet_rows.each_round(ctx, fleet_id))
        report = record.report(ctx, fleet_id=fleet_id)
        spec = row.spec
        out.append({
            "fleet_id": fleet_id, "status": row.status,
            "settings": {k: spec.get(k) for k in ("strategy", "clients_per_round", "rounds",
                                                  "round_deadline_s", "over_commit",
                                                  "min_completed", "faults")},
            "hours": [r.virtual_end_s / 3600 for r in rounds],
            "accuracy": [r.global_accuracy if r.global_accuracy is not None
                         else (r.client_accuracy or {}).get("mean") for r in rounds],
            "summary": {
                "rounds": len(rounds), "virtual_hours": report.get("virtual_hours"),
                "final_accuracy": report["global_accuracy"][-1] if rounds else None,
                "best_accuracy": max((a for a in report["global_accuracy"] if a is not None),
                                     default=None),
                "time_to_accuracy": report.get("time_to_accuracy"),
                "updates": {o: sum(r.outcomes.get(o, 0) for r in rounds)
                            for o in charts.OUTCOMES},
                "energy_j": sum(r.energy_j for r in rounds),
                "bytes": sum(r.bytes_down + r.bytes_up for r in rounds)}})
    return {"fleets": out}


def page(data: dict[str, Any]) -> str:
    """The comparison as a page: the chart and one row per fleet."""
    fleets = data["fleets"]
    chart = charts.accuracy_vs_time({f["fleet_id"]: (f["hours"], f["accuracy"])
                                     for f in fleets})
    head = ("fleet", "strategy", "deadline s", "over-commit", "rounds", "virtual h",
            "final acc", "best acc", "completed", "stragglers", "dropped", "energy kJ")
    rows = []
    for f in fleets:
        s, st, u = f["summary"], f["settings"], f["summary"]["updates"]
        rows.append((escape(f["fleet_id"]), escape(st["strategy"]["name"]),
                     st["round_deadline_s"] or "&ndash;", st["over_commit"], s["rounds"],
                     f"{s['virtual_hours'] or 0:.2f}", _pct(s["final_accuracy"]),
                     _pct(s["best_accuracy"]), u["completed"], u["straggler"],
                     u["dropped_offline"] + u["dropped_battery"], f"{s['energy_j'] / 1000:.1f}"))
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>fleets compared</title>"
            "<style>body{font-family:sans-serif;margin:2em auto;max-width:1100px}table{"
            "border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
            "svg{max-width:100%;height:auto}</style></head><body><h1>Fleets compared</h1>"
            f"{chart}<table><tr>{th}</tr>{trs}</table></body></html>")


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{100 * value:.1f}%"
