"""A two-node Ray cluster on one machine, with the S3 store (moto's server): nothing relies
on the API's local disk, and a fleet on it ends bit-identical to the local executor's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.executor.test_ray_local import SPECS, _fleet
from tests.helpers import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                          "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def test_fleet_on_a_two_node_cluster_with_s3_is_bit_identical(
        cluster: Any, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
        mlp_bytes: bytes) -> None:
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    root = tmp_path_factory.mktemp("cluster")
    with running_server("sqlite-local", root / "local", None) as local:
        reference = _fleet(local, mlp_bytes, SPECS["fedper"])
    with running_server("postgres-s3", root / "ray", s3_endpoint, executor="ray",
                        ray_address=cluster.address) as on_ray:
        assert on_ray.ctx.store.description.startswith("s3")
        assert len(on_ray.ctx.executor.actors) == 2  # one per CPU of the cluster
        got = _fleet(on_ray, mlp_bytes, SPECS["fedper"])
    assert got["global"] == reference["global"]
    assert got["personal"] == reference["personal"]
