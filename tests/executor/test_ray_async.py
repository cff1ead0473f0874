"""Asynchronous fleets on a real local Ray: the same bits as on the local executor (each
plan's starts run as one batch of updates, whichever actor ends first)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.executor.test_ray_local import _fleet, both, ray_local  # noqa: F401 - fixtures
from tests.helpers import LiveServer

pytestmark = pytest.mark.slow

SPECS = {
    "fedbuff": {"clients": 12, "clients_per_round": 6, "rounds": 4, "batch_size": 16,
                "partition": {"kind": "shards", "classes_per_client": 2}, "seed": 3,
                "personal": ["dense_2/"], "mode": "async",
                "async": {"algorithm": "fedbuff", "concurrency": 6, "buffer_size": 3}},
    "fedasync": {"clients": 10, "clients_per_round": 5, "rounds": 6, "batch_size": 16,
                 "seed": 8, "mode": "async",
                 "async": {"algorithm": "fedasync", "concurrency": 4, "max_staleness": 3}},
}


@pytest.mark.parametrize("name", list(SPECS))
def test_async_fleet_on_ray_is_bit_identical_to_local(
        both: dict[str, LiveServer], mlp_bytes: bytes, name: str) -> None:  # noqa: F811
    spec: dict[str, Any] = SPECS[name]
    local = _fleet(both["local"], mlp_bytes, spec)
    on_ray = _fleet(both["ray"], mlp_bytes, spec)
    assert len(local["global"]) == spec["rounds"]
    assert on_ray["global"] == local["global"]
    assert on_ray["personal"] == local["personal"]
