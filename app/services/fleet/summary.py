"""A fleet's report: accuracy per round and against virtual time, whom personalization
helped or hurt, and per device class who the global model serves and who it leaves behind."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.db.tables import FleetRoundRow, FleetRow
from app.federated.round_plan import OUTCOMES
from app.runtime.evaluate import quantiles
from app.services.context import Context
from app.services.fleet import rows as fleet_rows
from app.services.fleet.plan import FleetPlan

MILESTONES = (0.5, 0.7, 0.9)


def build(ctx: Context, row: FleetRow, plan: FleetPlan, acc_global: np.ndarray | None,
          acc_personal: np.ndarray | None) -> dict[str, Any]:
    """The Report of docs/api.md; `final` needs the per-client accuracies (None while running).
    The rounds are read a page at a time: only their figures are kept."""
    names = plan.devices.names
    counts = {name: dict.fromkeys(OUTCOMES, 0) for name in names}
    summary: list[Summary] = []
    failed: dict[str, int] = {}
    ends: list[float] = []  # async: the server updates' moments so far
    taus: dict[str, list[int]] = {name: [] for name in names}
    for r in fleet_rows.each_round(ctx, row.id):
        summary.append(Summary(r.virtual_end_s, r.global_accuracy, r.client_accuracy,
                               (r.privacy or {}).get("epsilon")))
        for u in r.updates:
            counts[names[plan.class_index[u[0]]]][u[4]] += 1
            if u[4] == "completed":  # started from the version of the updates before it
                taus[names[plan.class_index[u[0]]]].append(len(ends) - bisect_right(ends, u[1]))
            if len(u) > 10 and u[10] is not None:
                failed[u[10]] = failed.get(u[10], 0) + 1
        ends.append(r.virtual_end_s)
    report: dict[str, Any] = {
        "fleet_id": row.id, "rounds": len(summary),
        "global_accuracy": [r.global_accuracy for r in summary], "final": None,
        "virtual_hours": summary[-1].virtual_end_s / 3600 if summary else 0.0,
        "virtual_seconds": summary[-1].virtual_end_s if summary else 0.0,
        "time_to_accuracy": time_to_accuracy(summary),
        "device_classes": by_device_class(plan, counts, acc_global, acc_personal),
        "failed_updates": {"count": sum(failed.values()), "reasons": failed}}
    if plan.spec.get("privacy"):  # epsilon against rounds (and so accuracy against epsilon)
        report["epsilon"] = [r.epsilon for r in summary]
    if plan.spec.get("mode") == "async":  # staleness of the arrivals, per device class
        for name, got in taus.items():
            report["device_classes"][name]["staleness"] = {
                "mean": sum(got) / len(got), "max": max(got)} if got else None
    if acc_global is not None and acc_personal is not None:
        report["final"] = final(summary, acc_global, acc_personal)
    return report


@dataclass(frozen=True)
class Summary:
    """The figures of a round that the report reads."""

    virtual_end_s: float
    global_accuracy: float | None
    client_accuracy: dict[str, float] | None
    epsilon: float | None = None


def _score(r: Summary | FleetRoundRow) -> float | None:
    """A round's accuracy: on the test set, else the clients' mean on their holdouts."""
    if r.global_accuracy is not None:
        return r.global_accuracy
    return (r.client_accuracy or {}).get("mean")


def time_to_accuracy(rounds: list[Summary]) -> dict[str, float | None]:
    """Virtual seconds until the accuracy first reaches 50, 70 and 90 % of its best."""
    scores = [(r.virtual_end_s, _score(r)) for r in rounds]
    known = [s for _, s in scores if s is not None]
    out: dict[str, float | None] = {f"{int(m * 100)}%": None for m in MILESTONES}
    if not known:
        return out
    best = max(known)
    for m in MILESTONES:
        out[f"{int(m * 100)}%"] = next((t for t, s in scores if s is not None
                                        and s >= m * best), None)
    return out


def final(rounds: list[Summary], acc_global: np.ndarray,
          acc_personal: np.ndarray) -> dict[str, Any]:
    """The final global accuracy, the clients' distributions, and helped / hurt."""
    both = ~np.isnan(acc_global) & ~np.isnan(acc_personal)
    g, p = acc_global[both], acc_personal[both]
    n = int(both.sum())
    return {"global_accuracy": rounds[-1].global_accuracy if rounds else None,
            "client_accuracy_global": quantiles(acc_global[~np.isnan(acc_global)]),
            "client_accuracy_personal": quantiles(acc_personal[~np.isnan(acc_personal)]),
            "helped": float((p > g).sum() / n) if n else None,
            "hurt": float((p < g).sum() / n) if n else None,
            "clients_measured": n}


def by_device_class(plan: FleetPlan, counts: dict[str, dict[str, int]],
                    acc_global: np.ndarray | None,
                    acc_personal: np.ndarray | None) -> dict[str, dict[str, Any]]:
    """Per device class: clients, updates by outcome, mean global and personal accuracy."""
    index, names = plan.class_index, plan.devices.names
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        mine = index == k
        entry: dict[str, Any] = {"clients": int(mine.sum()), **counts[name]}
        for label, acc in (("global_accuracy", acc_global), ("personal_accuracy", acc_personal)):
            vals = acc[mine] if acc is not None else np.zeros(0)
            vals = vals[~np.isnan(vals)]
            entry[label] = float(vals.mean()) if vals.size else None
        out[name] = entry
    return out
