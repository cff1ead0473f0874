"""A fleet's global checkpoints equal what each strategy's definition gives, computed here
from updates run on plain interpreters: natural partition, dataset order, every client in
every round. Each round is checked from the fleet's own previous global checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
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

ROUNDS, BATCH = 3, 16
Arrays = dict[str, np.ndarray]
Results = list[tuple[Arrays, int]]


def _mean(results: Results) -> Arrays:
    total = sum(n for _, n in results)
    return {k: sum(w[k].astype(np.float64) * n for w, n in results) / total
            for k in results[0][0]}


def fedavg(state: dict[str, Any], r: int, x: Arrays, results: Results) -> Arrays:
    return _mean(results)


def fedmedian(state: dict[str, Any], r: int, x: Arrays, results: Results) -> Arrays:
    return {k: np.median(np.stack([w[k] for w, _ in results]).astype(np.float64), axis=0)
            for k in x}


def fedtrimmedavg(state: dict[str, Any], r: int, x: Arrays, results: Results) -> Arrays:
    cut = int(0.2 * len(results))
    out = {}
    for k in x:
        s = np.sort(np.stack([w[k] for w, _ in results]).astype(np.float64), axis=0)
        out[k] = s[cut:len(results) - cut].mean(axis=0)
    return out


def fedavgm(state: dict[str, Any], r: int, x: Arrays, results: Results) -> Arrays:
    lr, beta, mean = 0.5, 0.9, _mean(results)
    g = {k: x[k] - mean[k] for k in x}
    if "m" in state:
        g = {k: beta * state["m"][k] + g[k] for k in x}
    state["m"] = g
    return {k: x[k] - lr * g[k] for k in x}


def _fedopt(second: Callable[[np.ndarray, np.ndarray], np.ndarray], lr: Callable[[int], float],
            b1: float, tau: float) -> Callable[..., Arrays]:
    def step(state: dict[str, Any], r: int, x: Arrays, results: Results) -> Arrays:
        mean = _mean(results)
        d = {k: mean[k] - x[k] for k in x}
        m0 = state.get("m", {k: np.zeros_like(v) for k, v in d.items()})
        v0 = state.get("v", {k: np.zeros_like(v) for k, v in d.items()})
        m = {k: b1 * m0[k] + (1 - b1) * d[k] for k in d}
        v = {k: second(v0[k], d[k]) for k in d}
        state["m"], state["v"] = m, v
        return {k: x[k] + lr(r) * m[k] / (np.sqrt(v[k]) + tau) for k in x}
    return step


# Flower's definitions (flwr 1.42 serverapp/strategy): FedAdam's bias-corrected rate uses
# the round + 1; FedYogi's second moment moves by the sign; FedAdagrad sums the squares.
fedadam = _fedopt(lambda v, d: 0.99 * v + 0.01 * d**2,
                  lambda r: 0.1 * math.sqrt(1 - 0.99 ** (r + 1)) / (1 - 0.9 ** (r + 1)), 0.9, 1e-3)
fedyogi = _fedopt(lambda v, d: v - 0.01 * d**2 * np.sign(v - d**2), lambda r: 0.01, 0.9, 1e-3)
fedadagrad = _fedopt(lambda v, d: v + d**2, lambda r: 0.1, 0.0, 1e-3)

CASES: dict[str, tuple[dict[str, Any], Callable[..., Arrays]]] = {
    "fedavg": ({"name": "fedavg"}, fedavg),
    "fedmedian": ({"name": "fedmedian"}, fedmedian),
    "fedtrimmedavg": ({"name": "fedtrimmedavg"}, fedtrimmedavg),
    "fedavgm": ({"name": "fedavgm", "server_lr": 0.5, "momentum": 0.9}, fedavgm),
    "fedadam": ({"name": "fedadam"}, fedadam),
    "fedyogi": ({"name": "fedyogi"}, fedyogi),
    "fedadagrad": ({"name": "fedadagrad"}, fedadagrad),
}


@pytest.fixture(scope="module")
def population(client: httpx.Client) -> tuple[str, dict[str, np.ndarray]]:
    data = digits(240)
    return upload_dataset(client, "exa", data), data


@pytest.mark.parametrize("name", list(CASES))
def test_global_checkpoints_follow_the_strategy_definition(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        population: tuple[str, dict[str, np.ndarray]], name: str) -> None:
    dataset_id, data = population
    strategy, formula = CASES[name]
    fleet = finish(client, start(
        client, "exa", model_id=mlp_id, dataset_id=dataset_id, strategy=strategy,
        partition={"kind": "natural", "by": "writer"}, clients_per_round=8, rounds=ROUNDS,
        batch_size=BATCH, shuffle=False)["id"])
    assert fleet["spec"]["clients"] == 8 and len(fleet["global_checkpoint_ids"]) == ROUNDS
    groups = [np.flatnonzero(data["writer"] == w) for w in range(8)]  # client ids: sorted values
    start_bytes, state = initial_weights(mlp_bytes), {}
    for r, ckpt_id in enumerate(fleet["global_checkpoint_ids"], start=1):
        results = [(local_update(mlp_bytes, start_bytes, data["x"][g], data["y"][g], BATCH),
                    len(g)) for g in groups]
        current = read_ckpt(start_bytes)
        expected = formula(state, r, {k: v.astype(np.float64) for k, v in current.items()},
                           results)
        got_bytes = checkpoint_bytes(client, ckpt_id)
        got = read_ckpt(got_bytes)
        assert set(got) == set(current)
        for k in got:
            diff = float(np.max(np.abs(got[k].astype(np.float64) - expected[k])))
            assert diff < 1e-5, (name, r, k, diff)
        start_bytes = got_bytes  # the next round starts from the fleet's own global


def test_local_strategy_keeps_the_global_and_each_device_trains_alone(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        population: tuple[str, dict[str, np.ndarray]]) -> None:
    dataset_id, data = population
    fleet = finish(client, start(
        client, "exa", model_id=mlp_id, dataset_id=dataset_id, strategy={"name": "local"},
        partition={"kind": "natural", "by": "writer"}, clients_per_round=8, rounds=2,
        batch_size=BATCH, shuffle=False)["id"])
    initial = read_ckpt(initial_weights(mlp_bytes))
    for ckpt_id in fleet["global_checkpoint_ids"]:
        got = read_ckpt(checkpoint_bytes(client, ckpt_id))
        assert all(np.array_equal(got[k], initial[k]) for k in initial)  # no aggregation
    g = np.flatnonzero(data["writer"] == 3)
    alone = initial_weights(mlp_bytes)
    for _ in range(2):  # two rounds = two epochs of its own, from its own weights
        alone = _write(local_update(mlp_bytes, alone, data["x"][g], data["y"][g], BATCH))
    mine = client.get(f"/v1/fleets/{fleet['id']}/clients/3").json()
    got = read_ckpt(checkpoint_bytes(client, mine["checkpoint_id"]))
    expected = read_ckpt(alone)
    assert all(float(np.max(np.abs(got[k] - expected[k]))) < 1e-5 for k in expected)


def _write(arrays: Arrays) -> bytes:
    import tempfile
    from pathlib import Path

    from app.runtime import ckptfile

    with tempfile.TemporaryDirectory() as tmp:
        return ckptfile.write(arrays, Path(tmp))
