"""`fleetlite fleets ...` and `fleetlite devices` against a real server: small fleets on the
digits (a few clients, 2 rounds), followed live to the report's summary, read back, refused,
cancelled, interrupted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli.fleets import partition, strategy
from app.cli.output import seconds
from tests.cli.support import USER, cli, ctrl_c_cancels, field, ok, when_running
from tests.fleets.support import digits, upload_dataset
from tests.helpers import LiveServer

HEADLINE = re.compile(r"^fleet (flt_\w+) (\w+)", re.M)


@pytest.fixture(scope="module")
def data(client: httpx.Client) -> dict[str, str]:
    """USER's digits: 300 examples for the population, 150 for the test set."""
    train, test = digits(300), digits(150, offset=300)
    return {"train": upload_dataset(client, USER, train),
            "test": upload_dataset(client, USER, {"x": test["x"], "y": test["y"]}, "test")}


def small(model_id: str, data: dict[str, str], *more: str) -> list[str]:
    """`fleets run` of a small FedPer fleet: 6 clients of 2 classes, 3 a round, 2 rounds."""
    return ["fleets", "run", USER, "--model", model_id, "--dataset", data["train"],
            "--test-dataset", data["test"], "--clients", "6", "--per-round", "3",
            "--rounds", "2", "--partition", "shards", "--classes-per-client", "2",
            "--holdout", "0.25", "--personal", "dense_2/", "--batch-size", "16", "--seed", "1",
            *more]


@pytest.fixture(scope="module")
def ran(server: LiveServer, model_id: str, data: dict[str, str]) -> tuple[str, str]:
    """A small fleet run by the CLI to its end: (fleet id, what it printed)."""
    out = ok(cli(server, *small(model_id, data))).stdout
    found = HEADLINE.search(out)
    assert found and found.group(2) == "succeeded", out
    return found.group(1), out


def finished_a_round(fleet: dict[str, Any]) -> bool:
    return bool(fleet["global_checkpoint_ids"])


def quantile_row(out: str, label: str) -> list[str]:
    """The cells of one row of the summary's clients' accuracy table."""
    found = re.search(rf"^{label}\s+(.+)$", out, re.M)
    assert found, (label, out)
    return found.group(1).split()


def pct(value: float) -> str:
    return f"{value:.1%}"


def test_fleets_run_follows_to_the_report_summary(server: LiveServer, client: httpx.Client,
                                                   ran: tuple[str, str]) -> None:
    fleet_id, out = ran
    assert re.search(r"succeeded .*2/2 rounds\s+last round 2: loss \d\.\d{4}, global accuracy",
                     out), out  # the live bar's last frame
    report = client.get(f"/v1/fleets/{fleet_id}/report").json()
    final = report["final"]
    assert field(out, "test accuracy") == pct(final["global_accuracy"])
    for label, key in (("global model", "client_accuracy_global"),
                       ("personalized", "client_accuracy_personal")):
        assert quantile_row(out, label) == [pct(final[key][q]) for q in ("mean", "p10", "p50",
                                                                          "p90")]
    assert field(out, "helped") == pct(final["helped"])
    assert field(out, "hurt") == pct(final["hurt"])
    assert re.search(rf"^virtual time +{re.escape(seconds(report['virtual_hours'] * 3600))}$",
                     out, re.M), out
    page = field(out, "report")
    assert page == f"{server.url}/v1/fleets/{fleet_id}/report.html"
    assert httpx.get(page, timeout=60).headers["content-type"].startswith("text/html")
    assert f"fleetlite --url {server.url} fleets rounds {fleet_id}" in out


def test_fleets_show_list_rounds_clients_report(server: LiveServer, client: httpx.Client,
                                                ran: tuple[str, str]) -> None:
    fleet_id, _ = ran
    fleet = client.get(f"/v1/fleets/{fleet_id}").json()
    shown = ok(cli(server, "fleets", "show", fleet_id)).stdout
    assert field(shown, "global ckpt") == fleet["global_checkpoint_ids"][-1]
    assert field(shown, "partition") == "shards" and field(shown, "personal") == "dense_2/"
    assert fleet_id in ok(cli(server, "fleets", "list", USER)).stdout

    rounds = client.get(f"/v1/fleets/{fleet_id}/rounds").json()["items"]
    rows = re.findall(r"^(\d+)\s+(\d\.\d{4})\s+(\S+)\s+(\S+)\s+(\d+/\d+)\s+([\d.]+ \w+)\s*$",
                      ok(cli(server, "fleets", "rounds", fleet_id)).stdout, re.M)
    assert [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows] == [
        (r["round"], f"{r['train_loss']:.4f}", pct(r["global_accuracy"]),
         pct(r["client_accuracy"]["mean"]), f"{len(r['completed'])}/{len(r['selected'])}")
        for r in rounds]

    clients = client.get(f"/v1/fleets/{fleet_id}/clients").json()["items"]
    listed = ok(cli(server, "fleets", "clients", fleet_id)).stdout
    assert all(c["session_id"] in listed for c in clients), listed  # ids whole
    report = ok(cli(server, "fleets", "report", fleet_id)).stdout
    assert re.search(r"^device class\s+clients", report, re.M), report
    assert field(report, "report").endswith(f"/v1/fleets/{fleet_id}/report.html")

    for args, path in ((("show",), ""), (("rounds",), "/rounds"), (("clients",), "/clients"),
                       (("report",), "/report")):
        raw = json.loads(ok(cli(server, "--json", "fleets", *args, fleet_id)).stdout)
        assert raw == client.get(f"/v1/fleets/{fleet_id}{path}").json(), args


def test_devices_lists_the_catalogue(server: LiveServer, client: httpx.Client) -> None:
    catalogue = client.get("/v1/devices").json()
    out = ok(cli(server, "devices")).stdout
    for name in catalogue["classes"]:
        assert re.search(rf"^{name}\s+\d", out, re.M), out
    assert f"fleetlite --url {server.url} --json devices" in out
    assert json.loads(ok(cli(server, "--json", "devices")).stdout) == catalogue


def test_spec_file_with_flags_over_it_detach_and_follow(
        server: LiveServer, client: httpx.Client, model_id: str, data: dict[str, str],
        tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "model_id": model_id, "dataset_id": data["train"], "clients": 4,
        "clients_per_round": 2, "rounds": 9, "partition": {"kind": "dirichlet", "alpha": 0.5},
        "strategy": {"name": "fedadam", "tau": 0.01}, "batch_size": 32}))
    started = json.loads(ok(cli(server, "--json", "fleets", "run", USER, "--spec", str(spec),
                                "--rounds", "2", "--alpha", "2", "--strategy", "fedavgm",
                                "--param", "momentum=0.5", "--detach")).stdout)
    s = started["spec"]
    assert (s["rounds"], s["clients"], s["partition"]["kind"], s["partition"]["alpha"]) == (
        2, 4, "dirichlet", 2)
    assert s["strategy"]["name"] == "fedavgm" and s["strategy"]["momentum"] == 0.5
    assert "tau" not in s["strategy"]
    followed = cli(server, "fleets", "follow", started["id"])
    assert followed.exit_code == 0, followed.output
    assert f"following fleet {started['id']}" in followed.stderr
    assert HEADLINE.search(followed.stdout).groups() == (started["id"], "succeeded")  # type: ignore[union-attr]
    detached = ok(cli(server, "fleets", "run", USER, "--spec", str(spec), "--rounds", "1",
                      "--detach")).stdout
    fleet_id = field(detached, "fleet")
    assert f"fleetlite --url {server.url} fleets follow {fleet_id}" in detached
    assert f"fleetlite --url {server.url} fleets cancel {fleet_id}" in detached
    ok(cli(server, "fleets", "follow", fleet_id))


def test_flags_build_the_partition_and_the_strategy() -> None:
    assert partition(None, None, {"alpha": 0.3}) == {"kind": "dirichlet", "alpha": 0.3}
    assert partition({"kind": "natural", "by": "w"}, "shards", {}) == {"kind": "shards"}
    assert partition({"kind": "shards"}, None, {"classes_per_client": 3}) == {
        "kind": "shards", "classes_per_client": 3}
    assert partition({"kind": "iid"}, None, {}) == {"kind": "iid"}
    assert strategy(None, None, ["server_lr=0.1", "name2=x"]) == {
        "name": "fedavg", "server_lr": 0.1, "name2": "x"}
    assert strategy({"name": "fedyogi", "tau": 1}, "fedyogi", ["beta_1=0.8"]) == {
        "name": "fedyogi", "tau": 1, "beta_1": 0.8}


def test_refusals_exit_2_with_the_detail(server: LiveServer, model_id: str,
                                         data: dict[str, str]) -> None:
    too_many = cli(server, *small(model_id, data, "--per-round", "7"))
    assert too_many.exit_code == 2 and too_many.stdout == ""
    assert too_many.stderr.startswith("error: ") and "clients_per_round" in too_many.stderr
    no_model = cli(server, "fleets", "run", USER, "--dataset", data["train"])
    assert no_model.exit_code == 2 and "--model is missing" in no_model.stderr
    bad_param = cli(server, *small(model_id, data, "--param", "momentum"))
    assert bad_param.exit_code == 2 and "expected key=value" in bad_param.stderr
    missing = cli(server, "fleets", "show", "flt_nope")
    assert missing.exit_code == 2 and "flt_nope" in missing.stderr


def test_fleets_run_exits_1_when_the_fleet_is_cancelled(
        server: LiveServer, client: httpx.Client, model_id: str, data: dict[str, str]) -> None:
    canceller = when_running(client, "fleet", finished_a_round,
                             lambda f: ok(cli(server, "fleets", "cancel", f["id"])))
    result = cli(server, *small(model_id, data, "--rounds", "5000"))
    canceller.join()
    assert result.exit_code == 1, result.output
    fleet_id, status = HEADLINE.search(result.stdout).groups()  # type: ignore[union-attr]
    assert status == "cancelled", result.stdout
    # no final evaluation; and the summary never fails the command (the report of a
    # cancelled fleet may not answer)
    assert re.search(r"^(final +none: the fleet did not reach its end|summary +unavailable)",
                     result.stdout, re.M), result.stdout
    assert client.get(f"/v1/fleets/{fleet_id}").json()["status"] == "cancelled"


def test_ctrl_c_cancels_the_fleet_and_exits_130(
        server: LiveServer, client: httpx.Client, model_id: str, data: dict[str, str]) -> None:
    _, err = ctrl_c_cancels(server, client, "fleet", finished_a_round,
                            *small(model_id, data, "--rounds", "5000"))
    assert "it stops after the round under way" in err, err


def test_fleets_compare_prints_one_row_per_fleet(server: LiveServer, client: httpx.Client,
                                                 model_id: str, data: dict[str, str],
                                                 ran: tuple[str, str]) -> None:
    other = json.loads(ok(cli(server, "--json", *small(model_id, data, "--strategy", "local",
                                                         "--rounds", "1", "--name",
                                                         "local baseline"))).stdout)["id"]
    ids = [ran[0], other]
    out = ok(cli(server, "fleets", "compare", *ids)).stdout
    compared = client.get("/v1/fleets/compare", params={"ids": ",".join(ids)}).json()["fleets"]
    for label, f, strategy_name in zip((ran[0], "local baseline"), compared, ("fedavg", "local"),
                                       strict=True):
        row = re.search(rf"^{label}\s+succeeded\s+{strategy_name}\s.*$", out, re.M)
        assert row, out
        s = f["summary"]
        assert f" {seconds(s['virtual_hours'] * 3600)} " in row.group(0), row.group(0)
        assert f" {s['rounds']} " in row.group(0)
    assert re.search(rf"^local baseline +{other}$", out, re.M), out  # the name's id
    assert re.search(rf"^{other}\s+local baseline\s", ok(cli(server, "fleets", "list",
                                                              USER)).stdout, re.M)
    assert field(out, "chart") == f"{server.url}/v1/fleets/compare.html?ids={','.join(ids)}"
    assert httpx.get(f"{server.url}/v1/fleets/compare.html", params={"ids": ",".join(ids)},
                     timeout=60).status_code == 200
    assert json.loads(ok(cli(server, "--json", "fleets", "compare", *ids)).stdout) == {
        "fleets": compared}
    one = cli(server, "fleets", "compare", ids[0])
    assert one.exit_code == 2 and "two or more fleet ids" in one.stderr


def test_fleets_run_sends_name_and_async_mode(server: LiveServer, client: httpx.Client,
                                              model_id: str, data: dict[str, str]) -> None:
    started = json.loads(ok(cli(server, "--json", *small(
        model_id, data, "--name", "FedBuff 2x2", "--mode", "async", "--algorithm", "fedbuff",
        "--concurrency", "2", "--buffer-size", "2", "--detach"))).stdout)
    spec = client.get(f"/v1/fleets/{started['id']}").json()["spec"]
    assert (spec["name"], spec["mode"]) == ("FedBuff 2x2", "async")
    assert (spec["async"]["algorithm"], spec["async"]["concurrency"],
            spec["async"]["buffer_size"]) == ("fedbuff", 2, 2)
    ok(cli(server, "fleets", "follow", started["id"]))
