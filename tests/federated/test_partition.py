"""Partitions: exact cover, sizes, label skew, shards, natural groups, holdout, 422s."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.federated.partition import ClientData, Partition, class_ids, make_clients
from app.federated.seeds import generator


def split(n: int = 1000, clients: int = 10, holdout: float = 0.0, seed: int = 0,
          labels: np.ndarray | None = None, natural: np.ndarray | None = None,
          **partition: Any) -> Partition:
    partition.setdefault("kind", "iid")
    return make_clients(num_examples=n, partition=partition, clients=clients, holdout=holdout,
                        seed=seed, labels=labels, natural=natural)


def ten_classes(n: int = 1000, seed: int = 1) -> np.ndarray:
    """Integer labels 0..9, each class exactly n/10 times, in a random order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % 10)


def everything(p: Partition) -> np.ndarray:
    return np.concatenate([np.concatenate([c.train, c.holdout]) for c in p])


def assert_exact_cover(p: Partition, n: int) -> None:
    assert np.array_equal(np.sort(everything(p)), np.arange(n))  # disjoint and complete
    for c in p:
        assert c.train.dtype == np.int64 and c.holdout.dtype == np.int64
        assert np.all(np.diff(c.train) > 0) and np.all(np.diff(c.holdout) > 0)


def label_distance(p: Partition, labels: np.ndarray) -> float:
    """Mean total-variation distance between each client's label mix and the whole's."""
    whole = np.bincount(labels, minlength=10) / len(labels)
    mixes = [np.bincount(labels[c.train], minlength=10) / len(c.train) for c in p]
    return float(np.mean([0.5 * np.abs(m - whole).sum() for m in mixes]))


def test_split_iid_covers_every_example_once() -> None:
    p = split(n=1003, clients=10, holdout=0.2)
    assert len(p) == 10
    assert_exact_cover(p, 1003)


def test_split_iid_sizes_as_array_split() -> None:
    p = split(n=1003, clients=10)
    assert [len(c.train) for c in p] == [101, 101, 101, 100, 100, 100, 100, 100, 100, 100]
    assert list(p.num_train) == [len(c.train) for c in p]
    assert all(len(c.holdout) == 0 and c.key is None for c in p)


def test_split_iid_at_scale() -> None:
    p = split(n=1_000_000, clients=100_000)
    assert len(p) == 100_000 and set(p.num_train.tolist()) == {10}
    assert np.array_equal(np.bincount(p.client_of), p.num_train)
    assert np.array_equal(np.flatnonzero(p.client_of == 99_999), p[-1].train)


def test_split_iid_deals_examples_at_random() -> None:
    assert not np.array_equal(split(n=100, clients=10)[0].train, np.arange(10))


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards", "natural"])
def test_make_clients_same_arguments_same_output(kind: str) -> None:
    labels, by = ten_classes(), np.arange(1000) % 7
    extra: dict[str, Any] = {"by": "w"} if kind == "natural" else {}
    runs = [split(kind=kind, holdout=0.3, seed=s, labels=labels, natural=by, **extra)
            for s in (5, 5, 6)]
    same = [(c.train.tolist(), c.holdout.tolist()) for c in runs[0]]
    assert same == [(c.train.tolist(), c.holdout.tolist()) for c in runs[1]]
    assert same != [(c.train.tolist(), c.holdout.tolist()) for c in runs[2]]


def test_split_holdout_rounds_half_up_per_client() -> None:
    p = split(n=40, clients=4, holdout=0.25)  # 10 examples each: 2.5 -> 3 held out
    assert p.num_holdout.tolist() == [3, 3, 3, 3] and p.num_train.tolist() == [7] * 4
    q = split(n=40, clients=4, holdout=0.1)  # 10 * 0.1 is 1.0000000000000002: still 1
    assert q.num_holdout.tolist() == [1] * 4
    assert split(n=40, clients=4, holdout=0.04).num_holdout.tolist() == [0] * 4


def test_split_holdout_drawn_by_seed_and_client_id() -> None:
    p = split(n=500, clients=5, holdout=0.3, seed=9)
    for c in p:
        examples = np.sort(np.concatenate([c.train, c.holdout]))
        picked = generator(9, "holdout", c.client_id).permutation(len(examples))[:len(c.holdout)]
        assert np.array_equal(c.holdout, np.sort(examples[picked]))
    assert np.array_equal(p[2].holdout, p[2].holdout)  # drawn again on each lookup, same


def test_split_holdout_of_a_client_ignores_other_clients() -> None:
    # Same examples for client 0 under two natural splits that differ elsewhere.
    a = split(n=6, kind="natural", by="w", natural=np.array([0, 0, 0, 0, 1, 1]), holdout=0.25)
    b = split(n=6, kind="natural", by="w", natural=np.array([0, 0, 0, 0, 2, 3]), holdout=0.25)
    assert len(a[0].holdout) == 1 and np.array_equal(a[0].holdout, b[0].holdout)


def test_split_dirichlet_skew_stronger_for_small_alpha() -> None:
    labels = ten_classes(10_000)
    skewed = split(n=10_000, clients=20, kind="dirichlet", alpha=0.1, labels=labels)
    even = split(n=10_000, clients=20, kind="dirichlet", alpha=100.0, labels=labels)
    assert_exact_cover(skewed, 10_000)
    assert_exact_cover(even, 10_000)
    assert label_distance(skewed, labels) > 0.5 > 0.1 > label_distance(even, labels)


def test_split_dirichlet_takes_one_hot_labels() -> None:
    ids = ten_classes()
    one_hot = np.eye(10, dtype=np.float32)[ids]
    a = split(kind="dirichlet", labels=ids)
    b = split(kind="dirichlet", labels=one_hot)
    assert [c.train.tolist() for c in a] == [c.train.tolist() for c in b]


def test_split_natural_one_client_per_sorted_value() -> None:
    by = np.array(["bob", "al", "cy", "al", "bob", "al"])
    p = split(n=6, clients=99, kind="natural", by="writer", natural=by)
    assert [c.key for c in p] == ["al", "bob", "cy"] and p.keys == ("al", "bob", "cy")
    assert [c.train.tolist() for c in p] == [[1, 3, 5], [0, 4], [2]]


def test_split_natural_keys_from_ints_and_bytes() -> None:
    ints = split(n=4, kind="natural", by="w", natural=np.array([[30], [4], [30], [4]]))
    assert [c.key for c in ints] == ["4", "30"]
    raw = split(n=3, kind="natural", by="w", natural=np.array([b"x", b"y", b"x"]))
    assert [(c.key, c.train.tolist()) for c in raw] == [("x", [0, 2]), ("y", [1])]


def test_partition_is_a_read_only_sequence() -> None:
    p = split(n=30, clients=3, holdout=0.2)
    assert isinstance(p[0], ClientData) and p[-1].client_id == 2
    assert [c.client_id for c in p[1:]] == [1, 2]
    with pytest.raises(IndexError):
        p[3]
    for a in (p[0].train, p[0].holdout, p[1].train, p.num_train, p.client_of):
        assert not a.flags.writeable


def test_class_ids_of_rows_and_ids() -> None:
    rows = np.array([[0.1, 0.7, 0.2], [1, 0, 0]], dtype=np.float32)
    assert class_ids(rows).tolist() == [1, 0]
    assert class_ids(np.array([2, 0, 1], dtype=np.int32)).tolist() == [2, 0, 1]
    assert class_ids(np.array([[3], [1]], dtype=np.int64)).tolist() == [3, 1]
    assert class_ids(np.array([2], dtype=np.uint8)).dtype == np.int64


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0]), np.array([1, -1]),
                                 np.zeros((2, 2, 2)), np.array([[np.nan, 1.0]]),
                                 np.array(["a", "b"])])
def test_class_ids_refuse_other_arrays(bad: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match=r"^label: "):
        class_ids(bad)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "x"}, "partition.kind: unknown partition 'x' (known: iid, dirichlet, shards, "
                    "natural)"),
    ({"alpha": 0.5}, "partition.alpha: unknown parameter for iid (it takes no parameter)"),
    ({"kind": "shards", "alpha": 1}, "partition.alpha: unknown parameter for shards (it takes "
                                     "classes_per_client, shards_per_client)"),
    ({"kind": "shards", "classes_per_client": 2, "shards_per_client": 2},
     "partition.shards_per_client: give either classes_per_client or shards_per_client, not "
     "both"),
    ({"kind": "shards", "shards_per_client": 0}, "partition.shards_per_client: must be an "
                                                 "integer >= 1, got 0"),
    ({"kind": "shards", "shards_per_client": True}, "partition.shards_per_client: must be"),
    ({"kind": "dirichlet", "min_partition_size": -1},
     "partition.min_partition_size: must be an integer >= 0, got -1"),
    ({"kind": "dirichlet", "min_partition_size": 2.5}, "partition.min_partition_size: must be"),
    ({"kind": "dirichlet", "alpha": 0}, "partition.alpha: must be a finite number > 0"),
    ({"kind": "dirichlet", "alpha": -1.0}, "partition.alpha: must be"),
    ({"kind": "dirichlet", "alpha": float("inf")}, "partition.alpha: must be"),
    ({"kind": "dirichlet", "alpha": "0.5"}, "partition.alpha: must be"),
    ({"kind": "dirichlet", "alpha": True}, "partition.alpha: must be"),
    ({"kind": "shards", "classes_per_client": 0}, "partition.classes_per_client: must be"),
    ({"kind": "shards", "classes_per_client": 1.5}, "partition.classes_per_client: must be"),
    ({"kind": "natural"}, "partition.by: the natural partition needs the name"),
    ({"kind": "natural", "by": ""}, "partition.by: the natural partition needs the name"),
    ({"kind": "natural", "by": "w", "natural": None},
     "partition.by: the dataset has no array named 'w'"),
    ({"kind": "natural", "by": "w", "natural": np.arange(9)},
     "partition.by: array 'w' must hold one value per example (shape [10]), got shape [9]"),
    ({"kind": "natural", "by": "w", "natural": np.full(10, np.nan)}, "partition.by: array 'w'"),
    ({"kind": "dirichlet", "labels": None}, "label: the dirichlet partition needs labels"),
    ({"kind": "shards", "labels": None}, "label: the shards partition needs labels"),
    ({"kind": "shards", "labels": np.arange(5)}, "label: has 5 rows, the dataset has 10"),
    ({"clients": 30, "n": 20},
     "partition: client 20 gets no examples (20 examples over 30 clients); lower clients"),
    ({"kind": "shards", "classes_per_client": 1, "clients": 11},
     "partition: some client gets no examples (10 examples over 11 clients); lower clients"),
    ({"kind": "shards", "shards_per_client": 4, "clients": 3},
     "partition: 3 clients x 4 shards_per_client make more shards than the 10 examples; "
     "lower clients or partition.shards_per_client"),
    ({"kind": "shards", "classes_per_client": 2, "clients": 6},
     "partition.classes_per_client: class 0 has 5 examples for 6 clients; lower clients or "
     "partition.classes_per_client"),
    ({"kind": "shards", "classes_per_client": 3},
     "partition.classes_per_client: 3 is more than the 2 classes the dataset's labels hold"),
    ({"kind": "shards", "labels": np.zeros(10, dtype=np.int64)},
     "partition: shards needs labels of 2 classes or more, the dataset's labels hold 1; "
     "use iid"),
    ({"kind": "shards", "shards_per_client": 1, "labels": np.full(10, 3)},
     "partition: shards needs labels of 2 classes or more"),
    ({"kind": "dirichlet", "clients": 2},
     "partition.min_partition_size: 2 clients x 10 examples is more than the dataset's 10; "
     "lower partition.min_partition_size or clients"),
    ({"clients": 10**12}, "partition: client 10 gets no examples (10 examples over "
                          "1000000000000 clients)"),
    ({"kind": "dirichlet", "alpha": 0.001, "clients": 9, "min_partition_size": 1},
     "partition: client"),
    ({"holdout": 0.5, "clients": 10},
     "holdout: client 0 keeps no training example after holdout (1 in all, 1 held out); "
     "lower holdout"),
    ({"holdout": 0.9999}, "holdout: client 0 keeps no training example after holdout (5 in "
                          "all, 5 held out)"),
    ({"kind": "dirichlet", "holdout": 0.9999, "min_partition_size": 1}, "holdout: client"),
    ({"holdout": 1.0}, "holdout: must be a number in [0, 1)"),
    ({"holdout": -0.1}, "holdout: must be"),
    ({"clients": 0}, "clients: must be an integer >= 1"),
    ({"seed": -1}, "seed: must be an integer >= 0"),
])
def test_make_clients_refuses_with_the_field(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"n": 10, "clients": 2, "labels": np.arange(10) % 2,
                            "natural": np.arange(10), **kwargs}
    with pytest.raises(InvalidInput) as exc:
        split(**args)
    assert exc.value.detail.startswith(message), exc.value.detail
    assert exc.value.status == 422


def test_make_clients_refuses_partition_without_kind() -> None:
    with pytest.raises(InvalidInput, match=r"^partition\.kind: missing \(known: iid, "):
        make_clients(num_examples=10, partition={"alpha": 1}, clients=2, holdout=0, seed=0,
                     labels=None, natural=None)


def test_make_clients_refusal_names_the_remedy() -> None:
    with pytest.raises(InvalidInput, match=r"examples over 9 clients\); raise partition\.alpha "
                                           r"or lower clients \(11 draws tried\)$"):
        split(n=10, clients=9, kind="dirichlet", alpha=0.001, min_partition_size=0,
              labels=np.arange(10) % 2)


def test_split_natural_ignores_clients() -> None:
    p = split(n=4, clients=0, kind="natural", by="w", natural=np.array([1, 2, 1, 2]))
    assert len(p) == 2
