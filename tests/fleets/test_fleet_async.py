"""Asynchronous fleets over HTTP (issue 24), on both backends: FedBuff and FedAsync fleets
run to their end with a Round per server update that carries its staleness; in the
synchronous setup a FedBuff fleet equals a FedAvg fleet round for round; reruns are
bit-identical; bad input answers 422 naming the field."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from tests.fleets.support import (
    checkpoint_bytes,
    digits,
    finish,
    follow,
    read_ckpt,
    start,
    upload_dataset,
)
from tests.helpers import assert_problem

CLASSES = {  # two exact device classes, one four times the other's speed
    "fast": {"ms_per_example": 20.0, "down_kbps": 8000.0, "up_kbps": 4000.0, "train_watts": 2.0,
             "radio_joules_per_mb": 3.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0},
    "slow": {"ms_per_example": 80.0, "down_kbps": 2000.0, "up_kbps": 1000.0, "train_watts": 1.0,
             "radio_joules_per_mb": 5.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0},
}


@pytest.fixture(scope="module")
def population(client: httpx.Client) -> tuple[str, str]:
    train, test = digits(240), digits(200, offset=1200)
    return (upload_dataset(client, "asy", train),
            upload_dataset(client, "asy", {"x": test["x"], "y": test["y"]}, "test"))


def _spec(mlp_id: str, population: tuple[str, str], **extra: Any) -> dict[str, Any]:
    spec = {"model_id": mlp_id, "dataset_id": population[0], "test_dataset_id": population[1],
            "clients": 12, "clients_per_round": 4, "rounds": 6, "batch_size": 16, "seed": 3,
            "mode": "async", "async": {"algorithm": "fedbuff", "concurrency": 6,
                                       "buffer_size": 3},
            "devices": {"classes": CLASSES, "mix": {"fast": 1, "slow": 1}}}
    spec.update(extra)
    return spec


def _rounds(client: httpx.Client, fleet_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/fleets/{fleet_id}/rounds", params={"limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("asy", [
    {"algorithm": "fedbuff", "concurrency": 6, "buffer_size": 3},
    {"algorithm": "fedasync", "concurrency": 4, "mixing": 0.5,
     "staleness": {"kind": "hinge", "a": 10, "b": 1}},
])
def test_run_async_fleet_rounds_carry_staleness(client: httpx.Client, mlp_id: str,
                                                population: tuple[str, str],
                                                asy: dict[str, Any]) -> None:
    fleet = finish(client, start(client, "asy", **_spec(mlp_id, population, **{"async": asy}))
                   ["id"])
    rounds = _rounds(client, fleet["id"])
    assert [r["round"] for r in rounds] == list(range(1, 7))
    k = asy.get("buffer_size", 1)
    for prev, r in zip([None, *rounds], rounds, strict=False):
        assert r["status"] == "aggregated"
        assert r["outcomes"]["completed"] == k  # K arrivals make one server update
        assert r["staleness"]["max"] >= r["staleness"]["mean"] >= 0
        if prev is not None:  # updates follow one another on one clock
            assert r["virtual_start_s"] == prev["virtual_end_s"]
    assert any(r["staleness"]["max"] > 0 for r in rounds)  # the slow devices arrive late
    assert rounds[-1]["global_accuracy"] > 0.3
    clients = client.get(f"/v1/fleets/{fleet['id']}/clients")
    assert clients.status_code == 200, clients.text
    one = client.get(f"/v1/fleets/{fleet['id']}/clients/{clients.json()['items'][0]['client_id']}")
    assert one.status_code == 200, one.text
    assert {u["round"] for u in one.json()["timeline"]} <= set(range(1, 7))
    report = client.get(f"/v1/fleets/{fleet['id']}/report").json()
    stale = {name: c["staleness"] for name, c in report["device_classes"].items()}
    assert stale["slow"]["mean"] > stale["fast"]["mean"]
    page = client.get(f"/v1/fleets/{fleet['id']}/report.html").text
    assert "staleness mean / max" in page and f"{stale['slow']['mean']:.2f}" in page


def test_rerun_async_fleet_is_bit_identical(client: httpx.Client, mlp_id: str,
                                            population: tuple[str, str]) -> None:
    spec = _spec(mlp_id, population, rounds=4, personal=["dense_1"], **{"async": {
        "algorithm": "fedbuff", "concurrency": 6, "buffer_size": 6}})
    a, b = (finish(client, start(client, "asy", **spec)["id"]) for _ in range(2))
    for ca, cb in zip(a["global_checkpoint_ids"], b["global_checkpoint_ids"], strict=True):
        assert checkpoint_bytes(client, ca) == checkpoint_bytes(client, cb)
    strip = ("fleet_id", "started_at", "finished_at", "timings", "checkpoint_id")
    ra, rb = ([{k: v for k, v in r.items() if k not in strip} for r in _rounds(client, f["id"])]
              for f in (a, b))
    assert ra == rb
    # A fast device arrived and started again within one server update: its second update
    # started from its first's own layer, and both ended before the update.
    assert any(len(set(r["selected"])) < len(r["selected"]) for r in ra)


def test_run_fedbuff_fleet_equals_fedavg_in_the_sync_setup(
        client: httpx.Client, mlp_id: str, population: tuple[str, str]) -> None:
    # One device class, clients = per round = concurrency = K, equal iid clients (240 / 8),
    # always available, constant staleness, server_lr 1: FedBuff's update is FedAvg's round.
    common = {"clients": 8, "clients_per_round": 8, "rounds": 3, "shuffle": False,
              "devices": {"classes": CLASSES, "mix": {"fast": 1}}}
    sync = finish(client, start(client, "asy", **_spec(mlp_id, population, **common,
                                                       mode="sync", **{"async": None}))["id"])
    asy = finish(client, start(client, "asy", **_spec(
        mlp_id, population, **common, **{"async": {
            "algorithm": "fedbuff", "concurrency": 8, "buffer_size": 8, "server_lr": 1.0,
            "staleness": {"kind": "constant"}}}))["id"])
    for cs, ca in zip(sync["global_checkpoint_ids"], asy["global_checkpoint_ids"],
                      strict=True):
        ws, wa = read_ckpt(checkpoint_bytes(client, cs)), read_ckpt(checkpoint_bytes(client, ca))
        assert ws.keys() == wa.keys()
        assert max(float(np.max(np.abs(ws[k] - wa[k]))) for k in ws) < 1e-6
    for rs, ra in zip(_rounds(client, sync["id"]), _rounds(client, asy["id"]), strict=True):
        assert ra["staleness"] == {"mean": 0.0, "max": 0}
        assert ra["virtual_end_s"] == pytest.approx(rs["virtual_end_s"])


def test_run_async_fleet_corrupts_faulty_updates(client: httpx.Client, mlp_id: str,
                                                population: tuple[str, str]) -> None:
    spec = _spec(mlp_id, population, rounds=2)
    clean = finish(client, start(client, "asy", **spec)["id"])
    faulty = finish(client, start(client, "asy", **spec, faults={
        "fraction": 0.5, "kind": "sign_flip", "scale": 10.0})["id"])
    a, b = (read_ckpt(checkpoint_bytes(client, f["global_checkpoint_ids"][-1]))
            for f in (clean, faulty))
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) > 0.01
    assert _rounds(client, faulty["id"])[-1]["global_accuracy"] < \
        _rounds(client, clean["id"])[-1]["global_accuracy"]


@pytest.mark.parametrize(("change", "field"), [
    ({"async": {"algorithm": "fedbuff", "concurrency": 4, "buffer_size": 5}}, "buffer_size"),
    ({"async": {"algorithm": "fedbuff", "concurrency": 13}}, "async.concurrency"),
    ({"async": {"algorithm": "fedasync", "mixing": 0}}, "mixing"),
    ({"async": {"algorithm": "fedasync", "staleness": {"kind": "polynomial",
                                                       "exponent": -1}}}, "exponent"),
    ({"mode": "sync"}, "async"),
    ({"async": None}, "async"),
    ({"strategy": {"name": "local"}}, "strategy.name"),
    ({"round_deadline_s": 30.0}, "round_deadline_s"),
    ({"privacy": {"clipping": {"kind": "fixed", "norm": 0.5}, "noise_multiplier": 1.0}},
     "privacy"),
])
def test_create_async_fleet_bad_input_422(client: httpx.Client, mlp_id: str,
                                          population: tuple[str, str], change: dict[str, Any],
                                          field: str) -> None:
    r = client.post("/v1/users/asy/fleets", json=_spec(mlp_id, population, **change))
    assert_problem(r, 422)
    assert field in r.json()["detail"], r.json()


def test_run_async_fleet_records_failed_updates(client: httpx.Client, mlp_id: str) -> None:
    data = digits(480)
    data["x"][data["writer"] == 3] = np.inf  # writer 3's device trains on Inf: non-finite
    train = upload_dataset(client, "asyfail", data)
    spec = {"model_id": mlp_id, "dataset_id": train, "clients_per_round": 8, "rounds": 3,
            "batch_size": 16, "partition": {"kind": "natural", "by": "writer"},
            "mode": "async", "async": {"algorithm": "fedbuff", "concurrency": 8,
                                       "buffer_size": 4}}
    fleet = finish(client, start(client, "asyfail", **spec)["id"])
    rounds = _rounds(client, fleet["id"])
    assert sum(r["outcomes"]["failed"] for r in rounds) >= 1
    assert all(3 not in r["completed"] for r in rounds)
    assert all(r["outcomes"]["completed"] + r["outcomes"]["failed"] == 4 for r in rounds)
    failed = [f for r in rounds for f in r["failures"]]
    assert failed and {f["client_id"] for f in failed} == {3}
    assert "non-finite" in failed[0]["reason"]
    report = client.get(f"/v1/fleets/{fleet['id']}/report").json()
    assert report["failed_updates"]["count"] == len(failed)
    for page in (f"/v1/fleets/{fleet['id']}/report.html",
                 f"/v1/fleets/compare.html?ids={fleet['id']},{fleet['id']}"):
        assert client.get(page).status_code == 200, page

    strict = start(client, "asyfail", **spec, accept_failures=False)
    end = follow(client, strict["id"])[-1][1]
    assert end["status"] == "failed"
    assert "client 3" in end["error"], end["error"]
