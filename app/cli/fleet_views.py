"""How fleets read on a terminal: the live bar, a fleet, its report's summary, its rounds and
clients, and the device catalogue."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, TextColumn

from app.cli.api import Api, seg
from app.cli.bars import Elapsed, fit, live
from app.cli.follow import ACTIVE
from app.cli.output import console, duration, fields, loss, pct, seconds, table, when
from app.cli.state import api, hint

QUANTILES = ("mean", "p10", "p50", "p90")
DEVICE_FIGURES = (("down kbps", "down_kbps"), ("up kbps", "up_kbps"),
                  ("train W", "train_watts"), ("radio J/MB", "radio_joules_per_mb"),
                  ("battery Wh", "battery_wh"), ("charge %/h", "charge_pct_per_hour"))


def named(spec: dict[str, Any] | None, key: str) -> str:
    """A partition or strategy: `shards (classes_per_client 2)`, `fedavg`."""
    if not spec:
        return "-"
    params = ", ".join(f"{k} {v}" for k, v in spec.items() if k != key)
    return f"{spec.get(key)}" + (f" ({params})" if params else "")


def round_score(r: dict[str, Any], short: bool = False) -> str:
    """A finished round in a few words: its loss and accuracy (short: for a narrow bar)."""
    if short:
        acc = (f"acc {pct(r['global_accuracy'])}" if r["global_accuracy"] is not None
               else f"clients {pct((r['client_accuracy'] or {}).get('mean'))}")
        return f"r{r['round']} loss {loss(r['train_loss'])} {acc}"
    acc = (f"global accuracy {pct(r['global_accuracy'])}" if r["global_accuracy"] is not None
           else f"clients' accuracy {pct((r['client_accuracy'] or {}).get('mean'))}")
    return f"round {r['round']}: loss {loss(r['train_loss'])}, {acc}"


class FleetBar:
    """Two live bars: the rounds finished (with the last one's loss and accuracy), and the
    client updates done in the round under way. On a narrow terminal the bar shrinks and the
    note shortens, then goes, so that the counts and the elapsed time stay whole."""

    def __init__(self, fleet: dict[str, Any], client: Api, out: Console | None = None) -> None:
        self.client, self.finished, self.round = client, 0, 0
        self.progress, self.bar = live(
            MofNCompleteColumn(), TextColumn("{task.fields[unit]:<7}"),
            TextColumn("{task.fields[note]}"), Elapsed(), out=out or console())
        p = fleet["progress"]
        self.rounds = self.progress.add_task(fleet["status"], total=p["rounds"], unit="rounds",
                                             note="")
        self.updates = self.progress.add_task("round 1", total=None, unit="updates", note="",
                                              visible=False)
        self.notes: list[str] = [""]

    def last_round(self, fleet_id: str) -> list[str]:
        """The last finished round in a few words, then in fewer; nothing if it cannot be
        had."""
        items = (self.client.json_or_none(f"/v1/fleets/{seg(fleet_id)}/rounds")
                 or {}).get("items")
        return [f"last {round_score(items[-1])}", round_score(items[-1], short=True), ""
                ] if items else [""]

    def update(self, fleet: dict[str, Any]) -> None:
        """Move the bars to the fleet's progress."""
        p, done = fleet["progress"], len(fleet["global_checkpoint_ids"])
        if done != self.finished:
            self.finished, self.notes = done, self.last_round(fleet["id"])
        self.progress.update(self.rounds, description=fleet["status"], completed=done,
                             total=p["rounds"])
        if p["round"] != self.round:  # a new round: its clock starts again
            self.round = p["round"]
            self.progress.reset(self.updates, visible=False)
        self.progress.update(self.updates, description=f"round {p['round']}",
                             completed=p["updates_done"], total=p["updates_in_round"] or None,
                             visible=fleet["status"] in ACTIVE and p["round"] > 0)
        fit(self.progress, self.bar, self.rounds, [{"note": note} for note in self.notes])


def headline(f: dict[str, Any]) -> None:
    """`fleet ID succeeded in 1.2 s: 5/5 rounds, 10 of 20 clients per round, fedavg`, and the
    error, if any."""
    s, out = f["spec"], console()
    out.print(f"fleet {f['id']} {f['status']}{duration(f)}: {len(f['global_checkpoint_ids'])}/"
              f"{s['rounds']} rounds, {s['clients_per_round']} of {s['clients']} clients per "
              f"round, {s['strategy']['name']}", markup=False)
    if f.get("error"):
        out.print(f"error: {f['error']}", markup=False)


def render_fleet(ctx: typer.Context, f: dict[str, Any]) -> None:
    """A fleet: a status line, what it runs, where it is, the links to look further."""
    s, p = f["spec"], f["progress"]
    done = len(f["global_checkpoint_ids"])
    headline(f)
    fields([("name", s.get("name")), ("user", f["user_id"]), ("model", s["model_id"]),
            ("dataset", s["dataset_id"]),
            ("test dataset", s.get("test_dataset_id")), ("partition", named(s["partition"],
                                                                           "kind")),
            ("holdout", s["holdout"] or None), ("strategy", named(s["strategy"], "name")),
            ("training", f"{s['local_epochs']} epoch(s) of batch {s['batch_size']} a round"),
            ("personal", " ".join(s["personal"]) or None),
            ("finetune", s["finetune_epochs"] or None), ("seed", s["seed"]),
            ("under way", f"round {p['round']}: {p['updates_done']}/{p['updates_in_round']} "
                          "updates" if f["status"] in ACTIVE and p["round"] else None),
            ("global ckpt", f["global_checkpoint_ids"][-1] if done else None),
            ("created", when(f["created_at"])), ("started", when(f["started_at"])),
            ("finished", when(f["finished_at"])),
            ("report", api(ctx).absolute(f["links"]["report_html"]) if done else None)])


def render_summary(report: dict[str, Any]) -> None:
    """The report's summary: final accuracy, the clients' global vs personalized accuracy,
    helped and hurt, virtual time."""
    final = report.get("final")
    if final:
        fields([("test accuracy", f"{pct(final['global_accuracy'])} (the global model on the "
                 "test dataset)" if final["global_accuracy"] is not None else
                 "- (no test dataset)")])
        if final["client_accuracy_global"] or final["client_accuracy_personal"]:
            table(("clients' accuracy", *QUANTILES),
                  [(label, *(pct((final[key] or {}).get(q)) for q in QUANTILES))
                   for label, key in (("global model", "client_accuracy_global"),
                                      ("personalized", "client_accuracy_personal"))])
        else:
            fields([("clients' acc", "- (no holdout: --holdout keeps part of each client's "
                                     "examples out of training to measure it)")])
        fields([("helped", f"{pct(final['helped'])} of clients (personalized beats global)"
                 if final["helped"] is not None else None),
                ("hurt", f"{pct(final['hurt'])} of clients (personalized trails global)"
                 if final["hurt"] is not None else None)])
    else:
        curve = [a for a in report["global_accuracy"] if a is not None]
        fields([("final", "none: the fleet did not reach its end"),
                ("last accuracy", pct(curve[-1]) if curve else None)])
    hours = report.get("virtual_hours")
    fields([("virtual time", seconds(hours * 3600) if hours is not None else None)])


def render_links(ctx: typer.Context, fleet_id: str) -> None:
    """Where to look further: the report page, and the commands for rounds and clients."""
    fields([("report", api(ctx).absolute(f"/v1/fleets/{seg(fleet_id)}/report.html")),
            ("rounds", hint(ctx, "fleets", "rounds", fleet_id)),
            ("clients", hint(ctx, "fleets", "clients", fleet_id))])


def render_report(ctx: typer.Context, report: dict[str, Any]) -> None:
    """The whole report: the summary, time to accuracy and who each device class served."""
    console().print(f"fleet {report['fleet_id']}: {report['rounds']} rounds", markup=False,
                    soft_wrap=True)
    render_summary(report)
    reached = report.get("time_to_accuracy") or {}
    if any(v is not None for v in reached.values()):
        fields([("time to", ", ".join(f"{k} of best: {seconds(v)}"
                                      for k, v in reached.items()))])
    classes = report.get("device_classes") or {}
    table(("device class", "clients", "completed", "straggled", "dropped", "global acc",
           "personal acc"),
          [(name, c["clients"], c["completed"], c["straggler"],
            c["dropped_offline"] + c["dropped_battery"], pct(c["global_accuracy"]),
            pct(c["personal_accuracy"])) for name, c in classes.items()])
    render_links(ctx, report["fleet_id"])


def round_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """One row of `fleets rounds`."""
    label = str(r["round"]) + (" (abandoned)" if r.get("status") == "abandoned" else "")
    return (label, loss(r["train_loss"]), pct(r["global_accuracy"]),
            pct((r["client_accuracy"] or {}).get("mean")),
            f"{len(r['completed'])}/{len(r['selected'])}", seconds(r["virtual_end_s"]))


ROUND_COLUMNS = ("round", "train loss", "global acc", "clients' mean", "completed of selected",
                 "virtual end")
ROUND_DROP = ("clients' mean", "completed of selected")  # left out first to fit the terminal
CLIENT_COLUMNS = ("client", "device", "train", "holdout", "labels", "rounds", "global acc",
                  "personal acc", "session")
CLIENT_DROP = ("labels", "holdout", "rounds", "device", "session")
DEVICE_DROP = ("charge %/h", "radio J/MB", "battery Wh", "train W", "up kbps")


def client_row(c: dict[str, Any]) -> tuple[Any, ...]:
    """One row of `fleets clients`."""
    return (str(c["client_id"]) + (f" ({c['key']})" if c.get("key") is not None else ""),
            (c.get("device") or "-") + (" faulty" if c.get("faulty") else ""),
            c["num_train"], c["num_holdout"],
            " ".join(f"{k}:{v}" for k, v in sorted(c["labels"].items(),
                                                    key=lambda kv: (len(kv[0]), kv[0]))),
            c["rounds_participated"], pct(c["accuracy_global"]), pct(c["accuracy_personal"]),
            c["session_id"])


def render_devices(ctx: typer.Context, doc: dict[str, Any]) -> None:
    """The device catalogue: one row per class; * marks a figure that is an assumption."""
    mix = doc.get("mix") or {}

    def figure(c: dict[str, Any], key: str, unit: str = "") -> str:
        basis = (c.get("sources") or {}).get(key, {}).get("basis")
        return "-" if c.get(key) is None else f"{c[key]:g}{unit}" + ("*" if basis ==
                                                                      "assumption" else "")

    def speed(c: dict[str, Any]) -> str:
        if c.get("ms_per_example") is not None:
            return figure(c, "ms_per_example", " ms/ex")
        return figure(c, "slowdown", "x")

    table(("class", "mix", "train speed", *(label for label, _ in DEVICE_FIGURES)),
          [(name, pct(mix.get(name)), speed(c), *(figure(c, key) for _, key in DEVICE_FIGURES))
           for name, c in doc["classes"].items()], DEVICE_DROP)
    out = console()
    out.print("train speed: times slower than this server (x) or ms per example (ms/ex)",
              markup=False)
    out.print("* an assumption; every figure's basis and source:", markup=False)
    out.print(f"  {hint(ctx, '--json', 'devices')}", markup=False, soft_wrap=True)
