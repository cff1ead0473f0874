"""Label-skewed partitions: k classes per client, Flower's shards, Dirichlet redraws."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.federated.partition import Partition, make_clients, partition_spec
from app.federated.seeds import generator


def split(labels: np.ndarray, clients: int, seed: int = 0, holdout: float = 0.0,
          **partition: Any) -> Partition:
    return make_clients(num_examples=len(labels), partition=partition, clients=clients,
                        holdout=holdout, seed=seed, labels=labels, natural=None)


def uneven_classes(n: int = 2000, seed: int = 1) -> np.ndarray:
    """Ten classes of quite different sizes (about 3 % to 18 % each), in a random order."""
    rng = np.random.default_rng(seed)
    return rng.choice(10, size=n, p=np.linspace(1, 6, 10) / 35)


def classes_of(p: Partition, labels: np.ndarray) -> list[set[int]]:
    return [set(labels[np.concatenate([c.train, c.holdout])].tolist()) for c in p]


def label_order(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The partition's generator and the label order it starts from (shuffle, stable sort)."""
    rng = generator(seed, "partition")
    shuffled = rng.permutation(len(labels))
    return shuffled[np.argsort(labels[shuffled], kind="stable")], rng


@pytest.mark.parametrize(("k", "clients"), [(1, 7), (2, 10), (2, 23), (3, 10), (7, 31),
                                            (10, 12)])
def test_split_shards_give_every_client_exactly_k_classes(k: int, clients: int) -> None:
    labels = uneven_classes()
    p = split(labels, clients, kind="shards", classes_per_client=k, holdout=0.2)
    assert [len(s) for s in classes_of(p, labels)] == [k] * clients
    dealt = set().union(*classes_of(p, labels))
    assert len(dealt) == min(10, clients * k)  # 7 clients x 1 class leave 3 classes out
    everything = np.concatenate([np.concatenate([c.train, c.holdout]) for c in p])
    held = np.flatnonzero(np.isin(labels, list(dealt)))
    assert np.array_equal(np.sort(everything), held)  # every example of a dealt class, once
    assert np.array_equal(np.flatnonzero(p.client_of == -1), np.setdiff1d(
        np.arange(len(labels)), held))


@pytest.mark.parametrize(("k", "clients"), [(2, 10), (2, 23), (3, 7), (4, 13)])
def test_split_shards_deal_classes_evenly_over_clients(k: int, clients: int) -> None:
    labels = uneven_classes()
    p = split(labels, clients, kind="shards", classes_per_client=k, seed=4)
    holders = np.bincount([c for s in classes_of(p, labels) for c in s], minlength=10)
    assert holders.sum() == clients * k and holders.max() - holders.min() <= 1
    for c in range(10):  # a class's examples split evenly among its clients
        sizes = np.bincount(p.client_of[labels == c], minlength=clients)
        sizes = sizes[sizes > 0]
        assert len(sizes) == holders[c] and sizes.max() - sizes.min() <= 1


def test_split_shards_classes_differ_by_seed() -> None:
    labels = uneven_classes()
    runs = [classes_of(split(labels, 10, seed=s, kind="shards"), labels) for s in (0, 0, 1)]
    assert runs[0] == runs[1] != runs[2]


def flower_shard_partitioner(sorted_positions: np.ndarray, num_partitions: int,
                             num_shards_per_node: int, rng: np.random.Generator) -> list[list[int]]:
    """flwr-datasets 0.5 ShardPartitioner, num_shards_per_node given, on a sorted dataset.

    A transcription of `_determine_node_id_to_indices_if_needed` (shard_size None,
    keep_incomplete_shard False); its final shuffle only reorders within a partition.
    """
    n = len(sorted_positions)
    num_shards_used = int(num_partitions * num_shards_per_node)
    num_shards_per_node_array = np.ones(num_partitions) * num_shards_per_node
    shard_size = int(n / num_shards_used)
    num_usable_shards_in_dataset = int(math.floor(n / shard_size))
    indices_on_which_to_split_shards = np.cumsum(num_shards_per_node_array, dtype=int)
    shard_indices_array = rng.permutation(num_usable_shards_in_dataset)[:num_shards_used]
    nid_to_shard_indices = np.split(shard_indices_array, indices_on_which_to_split_shards)[:-1]
    node_id_to_indices: dict[int, list[int]] = {cid: [] for cid in range(num_partitions)}
    for node_id in range(num_partitions):
        for shard_idx in nid_to_shard_indices[node_id]:
            start_id = int(shard_idx * shard_size)
            end_id = min(int((shard_idx + 1) * shard_size), n)
            node_id_to_indices[node_id].extend(list(range(start_id, end_id)))
    return [sorted(sorted_positions[i].tolist() for i in node_id_to_indices[nid])
            for nid in range(num_partitions)]


@pytest.mark.parametrize(("n", "clients", "per_client", "seed"),
                         [(1797, 10, 2, 0), (1000, 50, 2, 3), (1003, 7, 3, 5), (60, 6, 4, 9)])
def test_split_shards_per_client_as_flowers_shard_partitioner(
        n: int, clients: int, per_client: int, seed: int) -> None:
    labels = uneven_classes(n, seed=seed)
    p = split(labels, clients, seed=seed, kind="shards", shards_per_client=per_client)
    order, rng = label_order(labels, seed)
    expected = flower_shard_partitioner(order, clients, per_client, rng)
    assert [c.train.tolist() for c in p] == expected
    size = n // (clients * per_client)
    assert set(p.num_train.tolist()) == {per_client * size}
    assert int((p.client_of == -1).sum()) == n - clients * per_client * size  # as Flower


def test_split_shards_per_client_two_classes_as_mcmahan() -> None:
    # McMahan et al.: 200 shards of one class each over 100 clients, 2 shards a client.
    labels = np.repeat(np.arange(10), 60)
    p = split(labels, 100, kind="shards", shards_per_client=2, holdout=0.5)
    assert max(len(s) for s in classes_of(p, labels)) == 2
    assert set(p.num_train.tolist()) == {3} and set(p.num_holdout.tolist()) == {3}


def flower_dirichlet(order: np.ndarray, labels: np.ndarray, clients: int, alpha: float,
                     min_partition_size: int, rng: np.random.Generator) -> tuple[list[list[int]],
                                                                                  int]:
    """flwr-datasets' DirichletPartitioner's draw loop (self_balancing off) over the label order.

    Returns each partition's sorted dataset indices and the number of draws it took.
    """
    sorted_labels = labels[order]
    for sampling_try in range(11):
        node_id_to_indices: dict[int, list[int]] = {nid: [] for nid in range(clients)}
        for k in np.unique(sorted_labels):
            indices_representing_class_k = np.nonzero(sorted_labels == k)[0]
            proportions = rng.dirichlet(np.full(clients, alpha))
            split_at = (np.cumsum(proportions) * len(indices_representing_class_k)).astype(int)
            for nid, part in enumerate(np.split(indices_representing_class_k, split_at[:-1])):
                node_id_to_indices[nid].extend(part.tolist())
        if min(len(v) for v in node_id_to_indices.values()) >= min_partition_size:
            parts = [sorted(order[v].tolist()) for v in node_id_to_indices.values()]
            return parts, sampling_try + 1
    raise ValueError("The max number of attempts (10) was reached.")


def test_split_dirichlet_redraws_until_min_partition_size() -> None:
    labels = uneven_classes(1000, seed=2)
    p = split(labels, 20, seed=4, kind="dirichlet", alpha=0.3)  # min_partition_size 10
    order, rng = label_order(labels, 4)
    expected, draws = flower_dirichlet(order, labels, 20, 0.3, 10, rng)
    assert draws > 1  # the first draw left a client under 10 examples
    assert [c.train.tolist() for c in p] == expected and p.num_train.min() >= 10
    first = split(labels, 20, seed=4, kind="dirichlet", alpha=0.3, min_partition_size=0)
    assert first.num_train.min() < 10  # without the floor: the first draw, as before


def test_split_dirichlet_keeps_a_first_draw_that_satisfies_min_size() -> None:
    labels = uneven_classes(1000, seed=2)
    p = split(labels, 5, seed=1, kind="dirichlet", alpha=1.0, min_partition_size=10)
    q = split(labels, 5, seed=1, kind="dirichlet", alpha=1.0, min_partition_size=0)
    assert p.client_of.tolist() == q.client_of.tolist() and p.num_train.min() >= 10


def test_split_dirichlet_refuses_when_no_draw_reaches_min_size() -> None:
    labels = uneven_classes(1000, seed=2)
    with pytest.raises(InvalidInput) as exc:
        split(labels, 50, kind="dirichlet", alpha=0.01, min_partition_size=15)
    assert exc.value.status == 422
    assert exc.value.detail.startswith("partition.min_partition_size: no draw of 11 gave every "
                                       "client 15 examples (client "), exc.value.detail


@pytest.mark.parametrize(("given", "resolved"), [
    ({"kind": "shards"}, {"kind": "shards", "classes_per_client": 2}),
    ({"kind": "shards", "shards_per_client": 3}, {"kind": "shards", "shards_per_client": 3}),
    ({"kind": "dirichlet"}, {"kind": "dirichlet", "alpha": 0.5, "min_partition_size": 10}),
    ({"kind": "dirichlet", "alpha": 2, "min_partition_size": 0},
     {"kind": "dirichlet", "alpha": 2.0, "min_partition_size": 0}),
])
def test_partition_spec_resolves_defaults_once(given: dict[str, Any],
                                               resolved: dict[str, Any]) -> None:
    assert partition_spec(given) == resolved
    assert partition_spec(resolved) == resolved  # a stored spec reads back the same
