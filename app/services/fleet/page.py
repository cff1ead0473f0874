"""A fleet's report as a page a person reads offline: the numbers, the charts (SVG drawn by
matplotlib, inline), the per-class and per-client tables; no script, no external asset."""

from __future__ import annotations

from html import escape
from importlib import resources
from typing import Any

import numpy as np

from app.services import chart_privacy, charts
from app.services.context import Context
from app.services.fleet import record, ui
from app.services.fleet import rows as fleet_rows
from app.store.blobs import BlobNotFound

TIMELINE_DEVICES = charts.MAX_ROWS  # a chart's rows; the rest on the next page of devices
CLIENT_ROWS = 200
READ_ATTEMPTS = 5


def css() -> str:
    """The pages' one stylesheet (app/ui/static/ui.css), inlined where a page has no server."""
    return (resources.files("app.ui") / "static" / "ui.css").read_text()


def render(ctx: Context, *, fleet_id: str) -> str:
    """The report page of one fleet."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    title = escape(ui.name_of(row.spec, row.id))
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>fleet {title}</title><style>{css()}</style>"
            f"</head><body>{content(ctx, fleet_id=fleet_id)}</body></html>")


def content(ctx: Context, *, fleet_id: str, devices_from: int = 0) -> str:
    """The report's content (heading, what it ran, numbers, charts, tables), a page's body."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return _content(ctx, fleet_id, devices_from)
        except BlobNotFound:
            # A running fleet's writer replaces its state blob after each round: a read that
            # began before the round's commit reads the row again, which names the new blob.
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _content(ctx: Context, fleet_id: str, devices_from: int) -> str:
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    report = record.report(ctx, fleet_id=fleet_id)
    rounds = list(fleet_rows.each_round(ctx, fleet_id))
    spec = row.spec
    name = ui.name_of(spec, row.id)
    parts = [f"<h1>{escape(name)}</h1>",
             f"<p class='status' data-status='{escape(row.status)}'>"
             f"<span class='badge {escape(row.status)}'>{escape(row.status)}</span> "
             f"{len(rounds)} of {spec['rounds']} rounds &middot; {row.num_clients} clients, "
             f"{spec['clients_per_round']} a round &middot; {escape(ui.strategy(spec))}"
             + (f" &middot; <code>{escape(row.id)}</code>" if name != row.id else "") + "</p>",
             "<div class='facts'>", _table(("what it ran", ""), [
                 (escape(k), escape(v)) for k, v in ui.settings(spec)]),
             _summary(report), "</div>"]
    if rounds:
        parts.append(_charts(ctx, row, rounds, devices_from))
    if report.get("epsilon") is not None and rounds:
        parts.append("<h2>Privacy</h2>" + chart_privacy.privacy(
            [r.round for r in rounds], report["epsilon"], [
                r.global_accuracy if r.global_accuracy is not None
                else (r.client_accuracy or {}).get("mean") for r in rounds],
            (spec.get("privacy") or {}).get("delta", 1e-5)))
    parts.append(_classes(report.get("device_classes") or {}))
    parts.append(_clients(ctx, row.id, row.num_clients))
    return "\n".join(parts)


def _charts(ctx: Context, row: Any, rounds: list[Any], devices_from: int) -> str:
    numbers = [r.round for r in rounds]
    band = [r.client_accuracy or {} for r in rounds]
    score = [r.global_accuracy if r.global_accuracy is not None
             else (r.client_accuracy or {}).get("mean") for r in rounds]
    outcomes = {o: [r.outcomes.get(o, 0) for r in rounds] for o in charts.OUTCOMES}
    parts = ['<div class="charts">', charts.accuracy_rounds(
        numbers, [r.global_accuracy for r in rounds],
        client_p10=[b.get("p10") for b in band], client_p50=[b.get("p50") for b in band],
        client_p90=[b.get("p90") for b in band]),
        charts.accuracy_vs_time({ui.name_of(row.spec, row.id):
                                 ([r.virtual_end_s for r in rounds], score)}),
        charts.outcomes_per_round(numbers, outcomes)]
    final = record.per_client(ctx, row)
    if final is not None:
        parts.append(charts.personal_vs_global(
            [_f(v) for v in final["accuracy_global"]],
            [_f(v) for v in final["accuracy_personal"]]))
    parts.append("</div>")
    details: dict[int, dict[str, Any]] = {}
    parts.append(_round_timeline(ctx, row.id, rounds[-1], details))
    parts.append(_timeline(ctx, row.id, rounds, devices_from, details))
    return "".join(parts)


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
            ("virtual time", charts.duration(report.get("virtual_seconds") or 0.0))]
    for name, seconds in (report.get("time_to_accuracy") or {}).items():
        rows.append((f"virtual time to {name} of the best accuracy",
                     "&ndash;" if seconds is None else charts.duration(seconds)))
    return _table(("how it went", ""), rows)


def _classes(classes: dict[str, dict[str, Any]]) -> str:
    if not classes:
        return ""
    stale = any("staleness" in c for c in classes.values())  # async fleets
    head = ("device class", "clients", "completed", "straggler", "dropped offline",
            "dropped battery", "global accuracy", "personal accuracy",
            *(("staleness mean / max",) if stale else ()))
    rows = [(escape(name), c["clients"], c["completed"], c["straggler"], c["dropped_offline"],
             c["dropped_battery"], _pct(c["global_accuracy"]), _pct(c["personal_accuracy"]),
             *((_staleness(c.get("staleness")),) if stale else ()))
            for name, c in classes.items()]
    return "<h2>Who the global model serves, by device class</h2>" + _table(head, rows)


def _staleness(s: dict[str, float] | None) -> str:
    return "&ndash;" if not s else f"{s['mean']:.2f} / {s['max']:g}"


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


def _device(ctx: Context, fleet_id: str, client_id: int,
            details: dict[int, dict[str, Any]]) -> dict[str, Any]:
    for attempt in range(READ_ATTEMPTS):
        if client_id in details:
            break
        try:
            details[client_id] = record.client(ctx, fleet_id=fleet_id, client_id=client_id)
        except BlobNotFound:  # the round committed meanwhile (see content): read it again
            if attempt == READ_ATTEMPTS - 1:
                raise
    return details[client_id]


def _round_timeline(ctx: Context, fleet_id: str, last: Any,
                    details: dict[int, dict[str, Any]]) -> str:
    """The last round's devices on its own stretch of the clock."""
    picked = sorted({u[0] for u in last.updates})
    shown = picked[:TIMELINE_DEVICES]
    devices = []
    for c in shown:
        detail = _device(ctx, fleet_id, c, details)
        devices.append((f"client {c} ({detail['device']})",
                        [tuple(w) for w in detail["available"]],
                        [(u[1], u[2], u[4]) for u in last.updates if u[0] == c]))
    more = f", the first {len(shown)} of {len(picked)}" if len(picked) > len(shown) else ""
    start = min([last.virtual_start_s, *(u[1] for u in last.updates)])
    end = max([last.virtual_end_s, *(u[2] for u in last.updates)])
    pad = (end - start) * 0.02 or 1.0
    return "<div class='wide'>" + charts.device_timeline(
        devices, title=f"Round {last.round}: its {len(picked)} devices{more}",
        span=(start - pad, end + pad)) + "</div>"


def _timeline(ctx: Context, fleet_id: str, rounds: list[Any], first: int,
              details: dict[int, dict[str, Any]]) -> str:
    """Every device that took part, TIMELINE_DEVICES a chart; a link pages through them."""
    picked = sorted({u[0] for r in rounds for u in r.updates})
    first = max(0, min(first, max(len(picked) - 1, 0)))
    shown = picked[first:first + TIMELINE_DEVICES]
    devices = []
    for c in shown:
        detail = _device(ctx, fleet_id, c, details)
        devices.append((f"client {c} ({detail['device']})",
                        [tuple(w) for w in detail["available"]],
                        [(t["start_s"], t["end_s"], t["outcome"]) for t in detail["timeline"]]))
    if not devices:
        return ""
    title = (f"All {len(picked)} devices that took part, on the virtual clock"
             if len(shown) == len(picked) else
             f"Devices {first + 1}-{first + len(shown)} of the {len(picked)} that took part")
    note = ""
    if len(shown) < len(picked):
        links = " ".join(
            f"<a href='/ui/fleets/{escape(fleet_id)}?devices_from={i}#devices'>"
            f"{i + 1}-{min(i + TIMELINE_DEVICES, len(picked))}</a>"
            for i in range(0, len(picked), TIMELINE_DEVICES))
        note = (f"<p class='note'>{TIMELINE_DEVICES} devices a chart, so each row stays "
                f"readable; every device by client id: {links}.</p>")
    return (f"<div class='wide' id='devices'>{charts.device_timeline(devices, title=title)}"
            f"{note}</div>")


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"

