"""What-if: several fleets side by side, accuracy against virtual time and their summaries,
so a team sees what a shorter deadline or more over-commitment buys."""

from __future__ import annotations

from html import escape
from typing import Any

from app.errors import InvalidInput, NotFound
from app.services import charts
from app.services.context import Context
from app.services.fleet import record, ui
from app.services.fleet import rows as fleet_rows
from app.services.fleet.page import css
from app.services.keyring import Principal

MAX_FLEETS = 16
SETTINGS = ("strategy", "clients_per_round", "rounds", "round_deadline_s", "over_commit",
            "min_completed", "faults", "personal", "finetune_epochs", "mode", "async",
            "privacy", "devices", "clients", "local_epochs", "batch_size", "partition", "seed")


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
            "fleet_id": fleet_id, "name": spec.get("name"), "status": row.status,
            "settings": {k: spec.get(k) for k in SETTINGS},
            "ran": dict(ui.settings(spec)),
            "hours": [r.virtual_end_s / 3600 for r in rounds],
            "seconds": [r.virtual_end_s for r in rounds],
            "accuracy": [r.global_accuracy if r.global_accuracy is not None
                         else (r.client_accuracy or {}).get("mean") for r in rounds],
            "summary": {
                "rounds": len(rounds), "virtual_hours": report.get("virtual_hours"),
                "virtual_seconds": report.get("virtual_seconds"),
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
    return ("<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            "content='width=device-width'><title>fleets compared</title>"
            f"<style>{css()}</style></head><body>{content(data)}</body></html>")


def content(data: dict[str, Any]) -> str:
    """The comparison's content: the chart, what each fleet ran (only the settings that
    differ, plus the strategy), and how each went, every fleet by its name."""
    fleets = data["fleets"]
    names = _names(fleets)
    chart = charts.accuracy_vs_time({n: (f["seconds"], f["accuracy"])
                                     for n, f in zip(names, fleets, strict=True)},
                                    width=2 * charts.WIDTH)
    labels = list(dict.fromkeys(k for f in fleets for k in f["ran"]))
    differ = [k for k in labels if k == "strategy"
              or len({f["ran"].get(k) for f in fleets}) > 1]
    same = [(k, fleets[0]["ran"].get(k)) for k in labels if k not in differ]
    ran_head = ("fleet", *differ)
    ran_rows = [(_link(n, f), *(escape(str(f["ran"].get(k, "\u2013"))) for k in differ))
                for n, f in zip(names, fleets, strict=True)]
    head = ("fleet", "status", "rounds", "virtual time", "final acc", "best acc",
            "to 50% / 70% / 90% of best", "completed", "stragglers", "dropped", "failed",
            "energy kJ", "traffic MB")
    rows = []
    for n, f in zip(names, fleets, strict=True):
        s, u = f["summary"], f["summary"]["updates"]
        reach = s.get("time_to_accuracy") or {}
        rows.append((_link(n, f), escape(f["status"]), s["rounds"],
                     charts.duration(s.get("virtual_seconds") or 0.0),
                     _pct(s["final_accuracy"]), _pct(s["best_accuracy"]),
                     " / ".join(charts.duration(reach.get(k)) for k in ("50%", "70%", "90%")),
                     u["completed"], u["straggler"],
                     u["dropped_offline"] + u["dropped_battery"], u.get("failed", 0),
                     f"{s['energy_j'] / 1000:.1f}", f"{s['bytes'] / 1e6:.1f}"))
    common = ("<p class='note'>All ran with " + "; ".join(
        f"{escape(k)} {escape(str(v))}" for k, v in same) + ".</p>") if same else ""
    return (f"<h1>Fleets compared</h1><div class='wide'>{chart}</div>"
            f"<h2>What each ran</h2>{_table(ran_head, ran_rows, 'ran')}{common}"
            f"<h2>How each went</h2>{_table(head, rows)}")


def _names(fleets: list[dict[str, Any]]) -> list[str]:
    """Each fleet's name; a name two fleets share gets its id's tail, so lines differ."""
    names = [f.get("name") or f["fleet_id"] for f in fleets]
    return [n if names.count(n) == 1 else f"{n} ({f['fleet_id'][-6:]})"
            for n, f in zip(names, fleets, strict=True)]


def _link(name: str, fleet: dict[str, Any]) -> str:
    return f"<a href='/ui/fleets/{escape(fleet['fleet_id'])}'>{escape(name)}</a>"


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]], kind: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table class='{kind}'><tr>{th}</tr>{trs}</table>"


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{100 * value:.1f}%"
