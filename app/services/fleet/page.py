"""A fleet's report as a page a person reads offline: the numbers, the charts (SVG drawn by
matplotlib, inline), the per-class and per-client tables; no script, no external asset."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from app.services import charts
from app.services.context import Context
from app.services.fleet import record
from app.services.fleet import rows as fleet_rows

TIMELINE_DEVICES = 8
CLIENT_ROWS = 200
_CSS = ("body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,"
        "th:first-child{text-align:left}.charts svg{max-width:100%;height:auto}"
        "p.note{color:#666}")


def render(ctx: Context, *, fleet_id: str) -> str:
    """The report page of one fleet."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    report = record.report(ctx, fleet_id=fleet_id)
    rounds = list(fleet_rows.each_round(ctx, fleet_id))
    spec = row.spec
    parts = [f"<h1>Fleet {escape(row.id)}</h1>",
             f"<p>{escape(row.status)} &middot; {len(rounds)} of {spec['rounds']} rounds &middot; "
             f"{row.num_clients} clients, {spec['clients_per_round']} per round &middot; "
             f"strategy {escape(spec['strategy']['name'])} &middot; partition "
             f"{escape(spec['partition']['kind'])}</p>", _summary(report)]
    if rounds:
        numbers = [r.round for r in rounds]
        band = [r.client_accuracy or {} for r in rounds]
        parts.append('<div class="charts">')
        parts.append(charts.accuracy_rounds(
            numbers, [r.global_accuracy for r in rounds],
            client_p10=[b.get("p10") for b in band], client_p50=[b.get("p50") for b in band],
            client_p90=[b.get("p90") for b in band]))
        hours = [r.virtual_end_s / 3600 for r in rounds]
        score = [r.global_accuracy if r.global_accuracy is not None
                 else (r.client_accuracy or {}).get("mean") for r in rounds]
        parts.append(charts.accuracy_vs_time({row.id: (hours, score)}))
        outcomes = {o: [r.outcomes.get(o, 0) for r in rounds] for o in charts.OUTCOMES}
        parts.append(charts.outcomes_per_round(numbers, outcomes))
        final = record.per_client(ctx, row)
        if final is not None:
            parts.append(charts.personal_vs_global(
                [_f(v) for v in final["accuracy_global"]],
                [_f(v) for v in final["accuracy_personal"]]))
        parts.append(_timeline(ctx, row.id, rounds))
        parts.append("</div>")
    parts.append(_classes(report.get("device_classes") or {}))
    parts.append(_clients(ctx, row.id, row.num_clients))
    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>fleet {escape(row.id)}"
            f"</title><style>{_CSS}</style></head><body>{body}</body></html>")


def _f(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _pct(value: Any) -> str:
    return "&ndash;" if value is None else f"{100 * value:.1f}%"


def _summary(report: dict[str, Any]) -> str:
    final = report.get("final") or {}
    cg, cp = final.get("client_accuracy_global") or {}, final.get("client_accuracy_personal") or {}
    rows = [("final global accuracy (test set)", _pct(final.get("global_accuracy"))),
            ("clients, global model: mean / p10 / p50 / p90",
             " / ".join(_pct(cg.get(k)) for k in ("mean", "p10", "p50", "p90"))),
            ("clients, personalized: mean / p10 / p50 / p90",
             " / ".join(_pct(cp.get(k)) for k in ("mean", "p10", "p50", "p90"))),
            ("personalization helped / hurt", f"{_pct(final.get('helped'))} / "
                                              f"{_pct(final.get('hurt'))}"),
            ("virtual time", f"{report.get('virtual_hours', 0):.2f} h")]
    for name, seconds in (report.get("time_to_accuracy") or {}).items():
        rows.append((f"virtual time to {name} of the best accuracy",
                     "&ndash;" if seconds is None else f"{seconds / 3600:.2f} h"))
    return _table(("", "value"), rows)


def _classes(classes: dict[str, dict[str, Any]]) -> str:
    if not classes:
        return ""
    head = ("device class", "clients", "completed", "straggler", "dropped offline",
            "dropped battery", "global accuracy", "personal accuracy")
    rows = [(escape(name), c["clients"], c["completed"], c["straggler"], c["dropped_offline"],
             c["dropped_battery"], _pct(c["global_accuracy"]), _pct(c["personal_accuracy"]))
            for name, c in classes.items()]
    return "<h2>Who the global model serves, by device class</h2>" + _table(head, rows)


def _clients(ctx: Context, fleet_id: str, total: int) -> str:
    page = record.clients(ctx, fleet_id=fleet_id, limit=min(total, CLIENT_ROWS),
                               cursor=None)
    head = ("client", "device", "train / holdout", "rounds", "global", "personal", "faulty")
    rows = [(c["client_id"], escape(c["device"] or ""), f"{c['num_train']} / {c['num_holdout']}",
             c["rounds_participated"], _pct(c["accuracy_global"]), _pct(c["accuracy_personal"]),
             "yes" if c["faulty"] else "") for c in page.items]
    note = (f"<p class='note'>The first {CLIENT_ROWS} of {total} clients; "
            f"GET /v1/fleets/{escape(fleet_id)}/clients lists them all.</p>"
            if total > CLIENT_ROWS else "")
    return "<h2>Clients</h2>" + _table(head, rows) + note


def _timeline(ctx: Context, fleet_id: str, rounds: list[Any]) -> str:
    picked = sorted({u[0] for r in rounds for u in r.updates})[:TIMELINE_DEVICES]
    devices = []
    for c in picked:
        detail = record.client(ctx, fleet_id=fleet_id, client_id=c)
        devices.append((f"client {c} ({detail['device']})",
                        [tuple(w) for w in detail["available"]],
                        [(t["start_s"], t["end_s"], t["outcome"]) for t in detail["timeline"]]))
    return charts.device_timeline(devices) if devices else ""


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"

