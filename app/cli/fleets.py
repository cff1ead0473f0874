"""`fleets`: start a population of simulated devices training in federated rounds, follow it
live, read its rounds, clients and report, cancel it; `devices`: the device catalogue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from app.cli.api import fail, seg
from app.cli.compare import fleets_compare
from app.cli.fleet_views import (
    CLIENT_COLUMNS,
    CLIENT_DROP,
    ROUND_COLUMNS,
    ROUND_DROP,
    FleetBar,
    client_row,
    headline,
    render_devices,
    render_fleet,
    render_links,
    render_report,
    render_summary,
    round_row,
)
from app.cli.follow import (
    Bar,
    follow_existing,
    run_to_end,
    show_cancelled,
    show_final,
    show_started,
)
from app.cli.groups import Typer
from app.cli.output import fields, show, when
from app.cli.resources import Cursor, Limit, Wide, page_params, show_page
from app.cli.state import api, hint

fleets_app = Typer(help="Fleets: simulated devices trained in federated rounds.")
STOPS = "after the round under way"
PARTITIONS = ("iid", "dirichlet", "shards", "natural")
PARTITION_OF = {"alpha": "dirichlet", "classes_per_client": "shards", "by": "natural"}
MODES = ("sync", "async")
PER_ROUND = 10  # clients a round unless said: the server's default, or all of fewer clients


def read_spec(file: Path | None) -> dict[str, Any]:
    """The FleetSpec in a JSON file, or an empty one."""
    if file is None:
        return {}
    try:
        spec = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"cannot read the spec {file}: {exc}")
    if not isinstance(spec, dict):
        fail(f"the spec {file} is not a JSON object (a FleetSpec)")
    return spec


def param(text: str) -> tuple[str, Any]:
    """`key=value`, the value as JSON when it is (0.1, true, [1]), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        fail(f"--param {text!r}: expected key=value, e.g. --param server_lr=0.1")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def partition(current: dict[str, Any] | None, kind: str | None,
              given: dict[str, Any]) -> dict[str, Any] | None:
    """The partition of the spec with the flags applied: --partition starts a new one of that
    kind; --alpha, --classes-per-client and --by set theirs (and imply their kind)."""
    if kind is not None and kind not in PARTITIONS:
        fail(f"--partition {kind!r}: choose one of {', '.join(PARTITIONS)}")
    if kind is None and not given:
        return current
    base = dict(current or {})
    if kind is not None and base.get("kind") != kind:
        base = {"kind": kind}
    base.update(given)
    if "kind" not in base:
        base["kind"] = PARTITION_OF[next(iter(given))]
    return base


def strategy(current: dict[str, Any] | None, name: str | None,
             params: list[str]) -> dict[str, Any] | None:
    """The strategy of the spec with the flags applied: --strategy starts a new one unless it
    names the same; each --param key=value sets one of its parameters."""
    if name is None and not params:
        return current
    base = dict(current or {"name": "fedavg"})
    if name is not None and base.get("name") != name:
        base = {"name": name}
    base.update(param(p) for p in params)
    return base


def asynchronous(spec: dict[str, Any], name: str | None, mode: str | None,
                 settings: dict[str, Any]) -> dict[str, Any]:
    """The spec's name, mode and async settings (algorithm, concurrency, buffer_size) with the
    flags applied."""
    if mode is not None and mode not in MODES:
        fail(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    given = {k: v for k, v in settings.items() if v is not None}
    out: dict[str, Any] = {k: v for k, v in (("name", name), ("mode", mode)) if v is not None}
    if given:
        out["async"] = {**(spec.get("async") or {}), **given}
    return out


def fleet_done(ctx: typer.Context, fleet: dict[str, Any]) -> NoReturn:
    """Print a finished fleet, then its report's summary; exit 0 if it succeeded, 1 if not."""
    def render(f: dict[str, Any]) -> None:
        headline(f)
        report = api(ctx).json_or_none(f"/v1/fleets/{seg(f['id'])}/report")
        if report:
            render_summary(report)
        else:
            fields([("summary", "unavailable: the report could not be read; "
                                f"{hint(ctx, 'fleets', 'report', f['id'])} says why")])
        render_links(ctx, f["id"])
    show_final(ctx, fleet, render)


def bar(ctx: typer.Context) -> Callable[[dict[str, Any]], Bar]:
    """A factory of the live bars of this invocation's fleets."""
    return lambda fleet: FleetBar(fleet, api(ctx))


@fleets_app.command("run")
def fleets_run(
    ctx: typer.Context, user: str,
    model: Annotated[str | None, typer.Option("--model", help="Base model id.")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="The population's examples (one of USER's datasets).")] = None,
    test_dataset: Annotated[str | None, typer.Option(
        "--test-dataset", help="Pooled held-out examples for the global accuracy.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="A name to tell the fleet by in lists, pages and compare.")] = None,
    clients: Annotated[int | None, typer.Option("--clients", min=1, help="Devices (default 10).")
                       ] = None,
    per_round: Annotated[int | None, typer.Option(
        "--per-round", min=1, help="Clients sampled each round (default min(10, clients)).")
                         ] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="(default 10)")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Local epochs of each client update (default 1).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="(default 32)")
                          ] = None,
    kind: Annotated[str | None, typer.Option(
        "--partition", help="iid, dirichlet, shards or natural (default iid).")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="dirichlet's label skew.")
                     ] = None,
    classes_per_client: Annotated[int | None, typer.Option(
        "--classes-per-client", min=1, help="shards: classes per client.")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="natural: the array whose values are the clients.")] = None,
    holdout: Annotated[float | None, typer.Option(
        "--holdout", min=0.0, max=1.0, help="Fraction of each client's examples kept for "
        "its own evaluation (default 0).")] = None,
    strategy_name: Annotated[str | None, typer.Option(
        "--strategy", help="fedavg, fedavgm, fedadam, fedyogi, fedadagrad, fedmedian, "
        "fedtrimmedavg or local (default fedavg).")] = None,
    params: Annotated[list[str] | None, typer.Option(
        "--param", metavar="KEY=VALUE", help="A strategy parameter (repeat it).")] = None,
    personal: Annotated[list[str] | None, typer.Option(
        "--personal", metavar="PREFIX", help="A variable-name prefix that stays on each "
        "device, FedPer (repeat it).")] = None,
    finetune_epochs: Annotated[int | None, typer.Option(
        "--finetune-epochs", min=0, help="Epochs each client trains alone at the end (default 0).")
                               ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="(default 0)")] = None,
    mode: Annotated[str | None, typer.Option(
        "--mode", help="sync (rounds) or async (updates applied as they arrive).")] = None,
    algorithm: Annotated[str | None, typer.Option(
        "--algorithm", help="async: fedbuff (a server update per --buffer-size arrivals) or "
        "fedasync (one per arrival).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, help="async: client updates under way at once.")] = None,
    buffer_size: Annotated[int | None, typer.Option(
        "--buffer-size", min=1, help="async: updates aggregated together (FedBuff).")] = None,
    spec_file: Annotated[Path | None, typer.Option(
        "--spec", metavar="FILE.json", exists=True, dir_okay=False, readable=True,
        help="A whole FleetSpec as JSON; the flags override it.")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return.")] = False,
) -> None:
    """Start a fleet of USER's simulated devices and follow it live unless --detach, ending
    with its report's summary.

    Exits 0 when the fleet succeeds, 1 when it fails or is cancelled; Ctrl-C cancels it (130).
    """
    spec = read_spec(spec_file)
    flags = {"model_id": model, "dataset_id": dataset, "test_dataset_id": test_dataset,
             "clients": clients, "clients_per_round": per_round, "rounds": rounds,
             "local_epochs": epochs, "batch_size": batch_size, "holdout": holdout,
             "personal": personal, "finetune_epochs": finetune_epochs, "seed": seed,
             "partition": partition(spec.get("partition"), kind, {k: v for k, v in (
                 ("alpha", alpha), ("classes_per_client", classes_per_client), ("by", by))
                 if v is not None}),
             "strategy": strategy(spec.get("strategy"), strategy_name, params or [])}
    spec.update({k: v for k, v in flags.items() if v is not None})
    spec.update(asynchronous(spec, name, mode, {"algorithm": algorithm,
                                                "concurrency": concurrency,
                                                "buffer_size": buffer_size}))
    if "clients_per_round" not in spec and "clients" in spec:
        spec["clients_per_round"] = min(PER_ROUND, spec["clients"])
    for key, flag in (("model_id", "--model"), ("dataset_id", "--dataset")):
        if not spec.get(key):
            fail(f"{flag} is missing (or {key} in --spec)")
    fleet = api(ctx).json("POST", f"/v1/users/{seg(user)}/fleets", json=spec)
    if detach:
        show_started(ctx, "fleet", fleet)
        return
    fleet_done(ctx, run_to_end(ctx, "fleet", fleet, bar(ctx), STOPS))


@fleets_app.command("follow")
def fleets_follow(ctx: typer.Context, fleet_id: str) -> None:
    """Follow a fleet live until it ends; Ctrl-C stops following and leaves it running.

    Exits 0 when the fleet succeeds, 1 when it fails or is cancelled.
    """
    fleet_done(ctx, follow_existing(ctx, "fleet", fleet_id, bar(ctx)))


@fleets_app.command("show")
def fleets_show(ctx: typer.Context, fleet_id: str) -> None:
    """Show a fleet: its spec, where it is, its links."""
    show(ctx, api(ctx).json("GET", f"/v1/fleets/{seg(fleet_id)}"),
         lambda f: render_fleet(ctx, f))


@fleets_app.command("list")
def fleets_list(ctx: typer.Context, user: str, limit: Limit = 50, cursor: Cursor = None,
                wide: Wide = False) -> None:
    """List USER's fleets, newest first (to fit: created, clients, strategy, name left out
    first)."""
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/fleets",
                         params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "name", "status", "rounds", "clients", "strategy", "created"),
              lambda f: (f["id"], f["spec"].get("name") or "-", f["status"],
                         f"{len(f['global_checkpoint_ids'])}/{f['spec']['rounds']}",
                         f"{f['spec']['clients_per_round']}/{f['spec']['clients']}",
                         f["spec"]["strategy"]["name"], when(f["created_at"])),
              drop=("created", "clients", "strategy", "name"))


@fleets_app.command("cancel")
def fleets_cancel(ctx: typer.Context, fleet_id: str) -> None:
    """Ask a fleet to stop after the round under way (it ends cancelled, keeping its rounds)."""
    show_cancelled(ctx, "fleet", api(ctx).json("POST", f"/v1/fleets/{seg(fleet_id)}/cancel"))


@fleets_app.command("rounds")
def fleets_rounds(ctx: typer.Context, fleet_id: str, wide: Wide = False) -> None:
    """Every finished round: loss, accuracy, updates completed of those selected, virtual end
    (to fit: the clients' mean accuracy, then the updates left out first)."""
    page = api(ctx).json("GET", f"/v1/fleets/{seg(fleet_id)}/rounds")
    show_page(ctx, page, ROUND_COLUMNS, round_row, ROUND_DROP)


@fleets_app.command("clients")
def fleets_clients(ctx: typer.Context, fleet_id: str, limit: Limit = 50,
                   cursor: Cursor = None, wide: Wide = False) -> None:
    """The fleet's clients: device, examples, labels, rounds, global vs personalized accuracy
    on their held-out examples, and the session that holds each one's personalized model (to
    fit: labels, holdout, rounds, device, session left out first)."""
    page = api(ctx).json("GET", f"/v1/fleets/{seg(fleet_id)}/clients",
                         params=page_params(limit, cursor))
    show_page(ctx, page, CLIENT_COLUMNS, client_row, CLIENT_DROP)


@fleets_app.command("report")
def fleets_report(ctx: typer.Context, fleet_id: str, wide: Wide = False) -> None:
    """The report: final accuracy, whom personalization helped or hurt, per device class."""
    show(ctx, api(ctx).json("GET", f"/v1/fleets/{seg(fleet_id)}/report"),
         lambda r: render_report(ctx, r))


def devices(ctx: typer.Context, wide: Wide = False) -> None:
    """The built-in device catalogue of the virtual clock: one row per device class (to fit:
    charge, radio, battery, train power, upload left out first)."""
    show(ctx, api(ctx).json("GET", "/v1/devices"), lambda d: render_devices(ctx, d))


fleets_app.command("compare")(fleets_compare)
