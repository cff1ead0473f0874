"""Fleets share the fleet workers fairly: another user's short fleet ends while a long one
runs, with the same result as alone; a user's queued and running fleets are capped (429),
and a fleet's size is bounded (422 naming both fields)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.fleets.support import digits, finish, follow, start, upload_dataset
from tests.helpers import assert_problem


@pytest.fixture(scope="module")
def dataset(client: httpx.Client) -> dict[str, str]:
    data = digits(200)
    return {"alice": upload_dataset(client, "alice", data),
            "bob": upload_dataset(client, "bob", data)}


def _spec(mlp_id: str, dataset_id: str, **over: Any) -> dict[str, Any]:
    return {"model_id": mlp_id, "dataset_id": dataset_id, "clients": 4,
            "clients_per_round": 2, "batch_size": 16, "seed": 9, **over}


def _globals(client: httpx.Client, fleet: dict[str, Any]) -> list[str]:
    return [client.get(f"/v1/checkpoints/{k}").json()["sha256"]
            for k in fleet["global_checkpoint_ids"]]


def test_a_short_fleet_ends_while_another_users_long_one_runs_with_the_result_it_has_alone(
        client: httpx.Client, mlp_id: str, dataset: dict[str, str]) -> None:
    long = start(client, "alice", **_spec(mlp_id, dataset["alice"], rounds=100_000))
    deadline = time.monotonic() + 120
    while not client.get(f"/v1/fleets/{long['id']}").json()["global_checkpoint_ids"]:
        assert time.monotonic() < deadline, "the long fleet did not start"
        time.sleep(0.02)
    short = finish(client, start(client, "bob", **_spec(mlp_id, dataset["bob"], rounds=3))["id"])
    running = client.get(f"/v1/fleets/{long['id']}").json()
    assert running["status"] == "running", running["status"]
    assert running["progress"]["rounds_done"] < 100_000
    client.post(f"/v1/fleets/{long['id']}/cancel")
    assert follow(client, long["id"])[-1][1]["status"] == "cancelled"
    alone = finish(client, start(client, "bob", **_spec(mlp_id, dataset["bob"], rounds=3))["id"])
    assert _globals(client, short) == _globals(client, alone)


def test_a_user_over_the_fleet_cap_gets_429_and_a_fleet_over_the_size_bound_422(
        client: httpx.Client, mlp_id: str, dataset: dict[str, str]) -> None:
    busy = [start(client, "alice", **_spec(mlp_id, dataset["alice"], rounds=100_000))
            for _ in range(4)]  # FLEETLITE_MAX_FLEETS_PER_USER: 4 by default
    r = client.post("/v1/users/alice/fleets", json=_spec(mlp_id, dataset["alice"], rounds=1))
    assert_problem(r, 429, "alice", "4")
    assert int(r.headers["retry-after"]) > 0
    other = client.post("/v1/users/bob/fleets", json=_spec(mlp_id, dataset["bob"], rounds=1))
    assert other.status_code == 202  # one user's cap is not another's
    for fleet in busy:
        client.post(f"/v1/fleets/{fleet['id']}/cancel")
    for fleet in busy:
        follow(client, fleet["id"])
    follow(client, other.json()["id"])
    huge = _spec(mlp_id, dataset["alice"], rounds=100_000, clients_per_round=20, clients=20)
    assert_problem(client.post("/v1/users/alice/fleets", json=huge), 422, "rounds",
                   "clients_per_round", "1000000")
