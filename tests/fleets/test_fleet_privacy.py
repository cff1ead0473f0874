"""DP-FedAvg in a fleet: the global after a round is the old one plus the clipped, equally
weighted mean of the known updates' deltas (numpy, from plain interpreters) plus Gaussian
noise of std z*C/m; each round's epsilon is dp-accounting's for the same events; a budget
stops the fleet; reruns are bit-identical; and what cannot be private is refused."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from app.services.privacy import RoundSample, epsilon_curve
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

BATCH = 16


@pytest.fixture(scope="module")
def population(client: httpx.Client) -> tuple[str, dict[str, np.ndarray]]:
    data = digits(240)
    return upload_dataset(client, "dp", data), data


def _spec(mlp_id: str, dataset_id: str, **privacy: Any) -> dict[str, Any]:
    return {"model_id": mlp_id, "dataset_id": dataset_id, "clients_per_round": 8, "rounds": 1,
            "partition": {"kind": "natural", "by": "writer"}, "batch_size": BATCH,
            "shuffle": False, "privacy": {"clipping": {"kind": "fixed", "norm": 0.5},
                                          **privacy}}


def _clipped_mean(mlp_bytes: bytes, data: dict[str, np.ndarray], norm: float
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The round's expected mean delta, written out: each client's update from the initial
    weights, its delta clipped to `norm` over all variables, summed, divided by m = 8."""
    start_bytes = initial_weights(mlp_bytes)
    base = {k: v.astype(np.float64) for k, v in read_ckpt(start_bytes).items()}
    total = {k: np.zeros_like(v) for k, v in base.items()}
    for w in range(8):
        g = np.flatnonzero(data["writer"] == w)
        got = local_update(mlp_bytes, start_bytes, data["x"][g], data["y"][g], BATCH)
        delta = {k: got[k].astype(np.float64) - base[k] for k in base}
        length = np.sqrt(sum(float(np.sum(d * d)) for d in delta.values()))
        scale = min(1.0, norm / length)
        for k in base:
            total[k] += delta[k] * scale
    return base, {k: v / 8 for k, v in total.items()}


@pytest.mark.parametrize("placement", ["server", "client"])
def test_a_private_round_adds_the_clipped_mean_delta_exactly(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        population: tuple[str, dict[str, np.ndarray]], placement: str) -> None:
    dataset_id, data = population
    fleet = finish(client, start(client, "dp", **_spec(mlp_id, dataset_id, noise_multiplier=0,
                                                      placement=placement))["id"])
    base, mean = _clipped_mean(mlp_bytes, data, 0.5)
    got = read_ckpt(checkpoint_bytes(client, fleet["global_checkpoint_ids"][0]))
    for k in base:
        expected = (base[k] + mean[k]).astype(np.float32)
        assert float(np.max(np.abs(got[k] - expected))) < 1e-6, k
    r = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"][0]
    assert r["clipping_norm"] == 0.5 and r["epsilon"] is None  # no noise: no guarantee


def test_the_noise_has_the_published_std_and_reruns_are_bit_identical(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        population: tuple[str, dict[str, np.ndarray]]) -> None:
    dataset_id, data = population
    spec = _spec(mlp_id, dataset_id, noise_multiplier=1.0)
    first = finish(client, start(client, "dp", **spec)["id"])
    twin = finish(client, start(client, "dp", **spec)["id"])
    got_bytes = checkpoint_bytes(client, first["global_checkpoint_ids"][0])
    assert got_bytes == checkpoint_bytes(client, twin["global_checkpoint_ids"][0])
    base, mean = _clipped_mean(mlp_bytes, data, 0.5)
    got = read_ckpt(got_bytes)
    noise = np.concatenate([(got[k].astype(np.float64) - base[k] - mean[k]).ravel()
                            for k in base])
    assert noise.size > 100_000
    assert abs(float(noise.std()) / (1.0 * 0.5 / 8) - 1) < 0.02
    assert abs(float(noise.mean())) < 0.01 * 0.5 / 8 * 10


def test_each_rounds_epsilon_is_the_accountants_and_a_budget_stops_the_fleet(
        client: httpx.Client, mlp_id: str,
        population: tuple[str, dict[str, np.ndarray]]) -> None:
    dataset_id, _ = population
    spec = {**_spec(mlp_id, dataset_id, noise_multiplier=1.5), "rounds": 4,
            "clients_per_round": 3}
    fleet = finish(client, start(client, "dp", **spec)["id"])
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    expected = epsilon_curve([RoundSample(8, 3)] * 4, noise_multiplier=1.5, delta=1e-5)
    assert [r["epsilon"] for r in rounds] == expected
    assert all(a < b for a, b in zip(expected, expected[1:], strict=False))
    budget = (expected[1] + expected[2]) / 2  # two rounds fit, the third would pass it
    capped = spec | {"privacy": {**spec["privacy"], "max_epsilon": budget}}
    stopped = finish(client, start(client, "dp", **capped)["id"])
    assert len(stopped["global_checkpoint_ids"]) == 2
    assert stopped["stopped_reason"] == "privacy budget"
    report = client.get(f"/v1/fleets/{stopped['id']}/report").json()
    assert report["rounds"] == 2 and report["epsilon"] == expected[:2]
    page = client.get(f"/v1/fleets/{stopped['id']}/report.html").text
    assert "Privacy" in page and 'id="epsilon"' in page  # no test set: no accuracy to plot


@pytest.mark.parametrize(("privacy", "strategy", "field"), [
    ({"noise_multiplier": -1, "clipping": {"kind": "fixed", "norm": 1}}, None, "noise_multiplier"),
    ({"noise_multiplier": 1, "clipping": {"kind": "fixed", "norm": 0}}, None, "norm"),
    ({"noise_multiplier": 1, "clipping": {"kind": "adaptive",
                                          "target_unclipped_quantile": 1.5}}, None, "quantile"),
    ({"noise_multiplier": 1, "delta": 1, "clipping": {"kind": "fixed", "norm": 1}}, None,
     "delta"),
    ({"noise_multiplier": 1, "max_epsilon": 0, "clipping": {"kind": "fixed", "norm": 1}}, None,
     "max_epsilon"),
    ({"noise_multiplier": 1, "clipping": {"kind": "fixed", "norm": 1}}, "fedmedian", "privacy"),
    ({"noise_multiplier": 1, "clipping": {"kind": "fixed", "norm": 1}}, "fedtrimmedavg",
     "privacy"),
])
def test_a_privacy_spec_that_cannot_run_is_422_naming_the_field(
        client: httpx.Client, mlp_id: str, population: tuple[str, dict[str, np.ndarray]],
        privacy: dict[str, Any], strategy: str | None, field: str) -> None:
    dataset_id, _ = population
    spec = {"model_id": mlp_id, "dataset_id": dataset_id, "clients": 4, "clients_per_round": 2,
            "privacy": privacy}
    if strategy:
        spec["strategy"] = {"name": strategy}
    assert_problem(client.post("/v1/users/dp/fleets", json=spec), 422, field)
