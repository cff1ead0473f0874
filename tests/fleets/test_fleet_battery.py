"""A fleet whose batteries are all flat: it fails as stalled, whatever the floor (issue 20.12)."""

from __future__ import annotations

import httpx
import pytest

from tests.fleets.support import digits, follow, start, upload_dataset


@pytest.mark.parametrize("floor", [0, 5])
def test_fleet_of_drained_batteries_fails_as_stalled(client: httpx.Client, mlp_id: str,
                                                     floor: int) -> None:
    dataset_id = upload_dataset(client, "bat", digits(200))
    # 0.0001 Wh (0.36 J): every device's first update drains it to the floor; under
    # "always" nothing charges, so once each has trained nobody can ever be eligible again.
    events = follow(client, start(
        client, "bat", model_id=mlp_id, dataset_id=dataset_id, clients=4, clients_per_round=2,
        rounds=20, batch_size=16, seed=1,
        devices={"mix": {"low_end": 1}, "classes": {"low_end": {"battery_wh": 0.0001}},
                 "min_battery_pct": floor})["id"])
    assert events[-1][0] == "end"
    fleet = events[-1][1]
    assert fleet["status"] == "failed", fleet
    assert "stalled" in fleet["error"], fleet["error"]
    rounds = client.get(f"/v1/fleets/{fleet['id']}/rounds").json()["items"]
    assert 1 <= len(rounds) <= 2  # 4 devices, 2 a round, each trains once
    for r in rounds:  # every selected update ran down a battery over a positive time
        assert r["virtual_end_s"] > r["virtual_start_s"], r
        assert r["outcomes"]["dropped_battery"] == len(r["selected"]), r
