"""Devices on the virtual clock, through the API: round times, completed sets, stragglers
and their FedAvg exactly as docs/api.md's formulas give them; diurnal windows and the battery
floor respected; faulty devices; the catalogue, compare and report pages."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fleets.support import (
    checkpoint_bytes,
    digits,
    finish,
    initial_weights,
    local_update,
    read_ckpt,
    start,
    upload_dataset,
)
from tests.helpers import assert_problem

# Two classes of exact figures, no energy or charging subtleties: the times are pure formula.
CLASSES = {
    "fast": {"ms_per_example": 20.0, "down_kbps": 8000.0, "up_kbps": 4000.0, "train_watts": 2.0,
             "radio_joules_per_mb": 3.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0},
    "slow": {"ms_per_example": 90.0, "down_kbps": 2000.0, "up_kbps": 1000.0, "train_watts": 1.0,
             "radio_joules_per_mb": 5.0, "battery_wh": 10.0, "charge_pct_per_hour": 0.0},
}


@pytest.fixture(scope="module")
def population(client: httpx.Client) -> tuple[str, str, dict[str, np.ndarray]]:
    train, test = digits(480), digits(300, offset=1200)
    return (upload_dataset(client, "clk", train),
            upload_dataset(client, "clk", {"x": test["x"], "y": test["y"]}, "test"), train)


def _bytes(client: httpx.Client, fleet: dict[str, Any], mlp_id: str) -> tuple[int, int]:
    ckpt = client.get(f"/v1/checkpoints/{fleet['global_checkpoint_ids'][0]}").json()
    model = client.get(f"/v1/models/{mlp_id}").json()
    return ckpt["size_bytes"], model["size_bytes"]


def test_rounds_follow_the_clock_formulas_and_aggregate_exactly_the_completed(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        population: tuple[str, str, dict[str, np.ndarray]]) -> None:
    dataset_id, _, data = population
    k, deadline = 4, 60.0
    fleet = finish(client, start(
        client, "clk", model_id=mlp_id, dataset_id=dataset_id,
        partition={"kind": "natural", "by": "writer"}, clients_per_round=k, over_commit=1.5,
        round_deadline_s=deadline, rounds=3, batch_size=16, shuffle=False,
        devices={"classes": CLASSES, "mix": {"fast": 1, "slow": 1}})["id"])
    ckpt_size, model_size = _bytes(client, fleet, mlp_id)
    clients = {c["client_id"]: c for c in client.get(
        f"/v1/fleets/{fleet['id']}/clients").json()["items"]}
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    seen: set[int] = set()
    now, start_bytes = 0.0, initial_weights(mlp_bytes)
    for r in rounds:
        assert r["virtual_start_s"] == pytest.approx(now)  # a round starts as the last ends
        assert len(r["selected"]) == math.ceil(k * 1.5)  # over-commitment
        ends, downloaded = {}, {}
        for c in r["selected"]:
            figures = CLASSES[clients[c]["device"]]
            down = (ckpt_size + (0 if c in seen else model_size)) * 8 / 1000 / figures[
                "down_kbps"]
            compute = clients[c]["num_train"] * figures["ms_per_example"] / 1000
            up = ckpt_size * 8 / 1000 / figures["up_kbps"]
            ends[c], downloaded[c] = now + down + compute + up, now + down
        by_end = sorted(ends, key=lambda c: (ends[c], c))  # ties to the lower id
        completed = sorted(c for c in by_end[:k] if ends[c] <= now + deadline)
        assert r["completed"] == completed
        end = min(now + deadline, ends[by_end[k - 1]], max(ends.values()))
        assert r["virtual_end_s"] == pytest.approx(end)
        assert r["outcomes"]["completed"] == len(completed)
        assert r["outcomes"]["straggler"] == len(r["selected"]) - len(completed)
        # The global checkpoint is the FedAvg of exactly the completed updates.
        results = []
        for c in completed:
            idx = np.flatnonzero(data["writer"] == c)
            results.append((local_update(mlp_bytes, start_bytes, data["x"][idx],
                                         data["y"][idx], 16), len(idx)))
        got_bytes = checkpoint_bytes(client, r["checkpoint_id"])
        got = read_ckpt(got_bytes)
        total = sum(n for _, n in results)
        for name in got:
            want = sum(w[name].astype(np.float64) * n for w, n in results) / total
            assert float(np.max(np.abs(got[name] - want))) < 1e-5, (r["round"], name)
        # The .tflite is delivered once a download phase finished before the round closed.
        seen |= {c for c in r["selected"] if downloaded[c] <= end}
        now, start_bytes = r["virtual_end_s"], got_bytes


def test_diurnal_updates_complete_inside_windows_and_the_battery_floor_holds(
        client: httpx.Client, mlp_id: str,
        population: tuple[str, str, dict[str, np.ndarray]]) -> None:
    dataset_id, _, _ = population
    floor = 60.0
    fleet = finish(client, start(
        client, "clk", model_id=mlp_id, dataset_id=dataset_id, clients=24,
        clients_per_round=6, rounds=8, batch_size=16, seed=9,
        devices={"availability": "diurnal", "min_battery_pct": floor})["id"])
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    checked = 0
    for c in range(24):
        detail = client.get(f"/v1/fleets/{fleet['id']}/clients/{c}").json()
        windows = detail["available"]
        for u in detail["timeline"]:
            assert u["battery_start_pct"] >= floor - 1e-6  # never selected below the floor
            if u["outcome"] == "completed":
                assert any(s <= u["start_s"] and u["end_s"] <= e for s, e in windows), u
                checked += 1
    assert checked == sum(len(r["completed"]) for r in rounds) > 0


def test_same_spec_same_timeline(client: httpx.Client, mlp_id: str,
                                 population: tuple[str, str, dict[str, np.ndarray]]) -> None:
    dataset_id, _, _ = population
    body = {"model_id": mlp_id, "dataset_id": dataset_id, "clients": 12,
            "clients_per_round": 3, "rounds": 3, "batch_size": 16, "over_commit": 2.0,
            "round_deadline_s": 120.0, "devices": {"availability": "diurnal"}, "seed": 2}
    a, b = (finish(client, start(client, "clk", **body)["id"]) for _ in range(2))
    ra, rb = (client.get(f"/v1/fleets/{f['id']}/rounds").json()["items"] for f in (a, b))
    keys = ("selected", "completed", "virtual_start_s", "virtual_end_s", "outcomes", "energy_j")
    assert [{k: r[k] for k in keys} for r in ra] == [{k: r[k] for k in keys} for r in rb]


def _accuracy(client: httpx.Client, body: dict[str, Any]) -> float:
    fleet = finish(client, start(client, "clk", **body)["id"])
    return client.get(f"/v1/fleets/{fleet['id']}/report").json()["final"]["global_accuracy"]


def test_noise_devices_break_fedavg_but_not_the_median(
        client: httpx.Client, mlp_id: str,
        population: tuple[str, str, dict[str, np.ndarray]]) -> None:
    dataset_id, test_id, _ = population
    base = {"model_id": mlp_id, "dataset_id": dataset_id, "test_dataset_id": test_id,
            "clients": 20, "clients_per_round": 20, "rounds": 5, "batch_size": 16, "seed": 1}
    noise = {"fraction": 0.3, "kind": "noise", "scale": 100.0}
    clean = _accuracy(client, base)
    broken = _accuracy(client, {**base, "faults": noise})
    robust = _accuracy(client, {**base, "faults": noise, "strategy": {"name": "fedmedian"}})
    assert clean > 0.6, clean
    assert broken < clean - 0.3, (clean, broken)  # FedAvg collapses under 30 % noise
    assert robust > clean - 0.15, (clean, robust)  # the median stays near the clean run
    faulty = [c for c in client.get(f"/v1/fleets/{_last(client)}/clients").json()["items"]
              if c["faulty"]]
    assert len(faulty) == 6  # 30 % of 20, said per client


def _last(client: httpx.Client) -> str:
    return client.get("/v1/users/clk/fleets", params={"limit": 1}).json()["items"][0]["id"]


def test_catalogue_compare_and_pages(client: httpx.Client, mlp_id: str,
                                     population: tuple[str, str, dict[str, np.ndarray]]) -> None:
    catalogue = client.get("/v1/devices").json()
    assert len(catalogue["classes"]) >= 3 and sum(catalogue["mix"].values()) > 0
    dataset_id, test_id, _ = population
    body = {"model_id": mlp_id, "dataset_id": dataset_id, "test_dataset_id": test_id,
            "clients": 12, "clients_per_round": 4, "rounds": 3, "batch_size": 16,
            "devices": {"classes": CLASSES, "mix": {"fast": 1, "slow": 1}}}
    # Fast devices finish in about 2 virtual seconds, slow ones in about 8.
    short = finish(client, start(client, "clk", **body, round_deadline_s=3.0)["id"])
    long = finish(client, start(client, "clk", **body, round_deadline_s=600.0)["id"])
    ids = f"{short['id']},{long['id']}"
    data = client.get("/v1/fleets/compare", params={"ids": ids}).json()
    assert [f["fleet_id"] for f in data["fleets"]] == [short["id"], long["id"]]
    hours = [f["summary"]["virtual_hours"] for f in data["fleets"]]
    assert hours[0] < hours[1]  # a shorter deadline closes rounds sooner
    page = client.get("/v1/fleets/compare.html", params={"ids": ids})
    assert page.status_code == 200 and "<svg" in page.text and short["id"] in page.text
    assert_problem(client.get("/v1/fleets/compare", params={"ids": short["id"]}), 422, "ids")
    report = client.get(f"/v1/fleets/{long['id']}/report").json()
    assert report["virtual_hours"] > 0 and set(report["time_to_accuracy"]) == {"50%", "70%",
                                                                              "90%"}
    assert set(report["device_classes"]) == {"fast", "slow"}


@pytest.mark.parametrize(("devices", "field"), [
    ({"mix": {"tablet": 1}}, "devices.mix"),
    ({"classes": {"slow": {"slowdown": -2, "down_kbps": 1, "up_kbps": 1, "train_watts": 1,
                           "radio_joules_per_mb": 1, "battery_wh": 1,
                           "charge_pct_per_hour": 1}}}, "devices.classes.slow.slowdown"),
    ({"mix": {"low_end": 0, "flagship": 0}}, "devices.mix"),
    ({"availability": "weekends"}, "devices.availability"),
    ({"min_battery_pct": 120}, "devices.min_battery_pct"),
])
def test_bad_device_specs_are_422(client: httpx.Client, mlp_id: str,
                                  population: tuple[str, str, dict[str, np.ndarray]],
                                  devices: dict[str, Any], field: str) -> None:
    r = client.post("/v1/users/clk/fleets", json={"model_id": mlp_id,
                                                  "dataset_id": population[0],
                                                  "devices": devices})
    assert_problem(r, 422, field)
