"""Faults against their definitions: the faulty clients, noise, sign flip, label flip."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.federated.faults import (
    Faults,
    corrupt,
    faulty_clients,
    flip_labels,
    make_faults,
)
from app.federated.seeds import generator


def model(seed: int, n: int = 20_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"b/bias": rng.normal(size=(10,)).astype(np.float32),
            "a/kernel": rng.normal(size=(n,)).astype(np.float32)}


START = model(0)
SAVED = {k: v + np.float32(0.01) * model(1)[k] for k, v in START.items()}


def test_make_faults_fills_defaults() -> None:
    assert make_faults(None) is None
    assert make_faults({"kind": "noise"}) == Faults("noise", 0.2, 10.0)
    assert make_faults({"kind": "label_flip", "fraction": 1, "scale": 0}) == Faults(
        "label_flip", 1.0, 0.0)


@pytest.mark.parametrize(("spec", "message"), [
    ({}, "faults.kind: missing (known: noise, sign_flip, label_flip)"),
    ({"kind": "delay"}, "faults.kind: unknown kind 'delay'"),
    ({"kind": "noise", "fraction": 1.5}, "faults.fraction: must be a number in [0, 1], got 1.5"),
    ({"kind": "noise", "fraction": True}, "faults.fraction: must be"),
    ({"kind": "noise", "scale": -1}, "faults.scale: must be a finite number >= 0, got -1"),
    ({"kind": "noise", "scale": float("inf")}, "faults.scale: must be"),
    ({"kind": "noise", "rate": 0.1}, "faults.rate: unknown field"),
    ([], "faults: must be null or an object"),
])
def test_make_faults_refuses_with_the_field(spec: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        make_faults(spec)
    assert exc.value.detail.startswith(message), exc.value.detail


def test_faulty_clients_fraction_of_ids_rounded_half_up() -> None:
    chosen = faulty_clients(10, 0.25, seed=3)  # 2.5 -> 3
    assert len(chosen) == 3 and len(set(chosen.tolist())) == 3
    assert chosen.tolist() == sorted(chosen.tolist()) and chosen.min() >= 0 and chosen.max() < 10
    assert faulty_clients(10, 0.0, seed=3).tolist() == []
    assert faulty_clients(10, 1.0, seed=3).tolist() == list(range(10))
    assert len(faulty_clients(1000, 0.2, seed=3)) == 200


def test_faulty_clients_seeded() -> None:
    assert np.array_equal(faulty_clients(1000, 0.1, 7), faulty_clients(1000, 0.1, 7))
    assert not np.array_equal(faulty_clients(1000, 0.1, 7), faulty_clients(1000, 0.1, 8))


def test_corrupt_noise_replaces_update_by_scaled_gaussian() -> None:
    got = corrupt("noise", SAVED, START, scale=10.0, seed=1, server_round=2, client_id=5)
    assert list(got) == list(SAVED) and all(got[k].dtype == np.float32 for k in got)
    update = SAVED["a/kernel"].astype(np.float64) - START["a/kernel"]
    noise = got["a/kernel"].astype(np.float64) - START["a/kernel"]
    assert abs(noise.std() / (10 * update.std()) - 1) < 0.03  # 20,000 draws
    assert abs(noise.mean()) < 0.03 * noise.std()
    assert abs(np.corrcoef(noise, update)[0, 1]) < 0.05  # replaced, not added


def test_corrupt_noise_draws_from_seed_round_client_in_name_order() -> None:
    got = corrupt("noise", SAVED, START, scale=3.0, seed=1, server_round=2, client_id=5)
    rng = generator(1, "noise", 2, 5)
    for k in sorted(SAVED):  # "a/kernel" first, whatever the dict's order
        update = SAVED[k].astype(np.float64) - START[k]
        want = START[k] + rng.standard_normal(update.shape) * 3.0 * update.std()
        np.testing.assert_allclose(got[k], want.astype(np.float32), rtol=1e-6)


def test_corrupt_noise_differs_by_round_and_client() -> None:
    def draw(rnd: int, client: int) -> bytes:
        return corrupt("noise", SAVED, START, scale=1.0, seed=0, server_round=rnd,
                       client_id=client)["b/bias"].tobytes()
    assert draw(1, 1) == draw(1, 1)
    assert len({draw(1, 1), draw(2, 1), draw(1, 2)}) == 3


def test_corrupt_sign_flip_negates_and_scales_update() -> None:
    before = copy.deepcopy((SAVED, START))
    got = corrupt("sign_flip", SAVED, START, scale=4.0, seed=0, server_round=1, client_id=0)
    for k in SAVED:
        want = START[k] - 4.0 * (SAVED[k].astype(np.float64) - START[k])
        np.testing.assert_allclose(got[k], want, rtol=1e-6, atol=1e-6)
        assert np.array_equal(before[0][k], SAVED[k]) and np.array_equal(before[1][k], START[k])


def test_corrupt_refuses_label_flip() -> None:
    with pytest.raises(ValueError, match="label_flip acts on labels"):
        corrupt("label_flip", SAVED, START, scale=1.0, seed=0, server_round=1, client_id=0)


def test_flip_labels_one_hot_rows() -> None:
    y = np.eye(10, dtype=np.float32)[[0, 3, 9]]
    flipped = flip_labels(y)
    assert np.argmax(flipped, axis=1).tolist() == [9, 6, 0]
    assert flipped.dtype == np.float32 and flipped.flags.c_contiguous
    assert np.argmax(y, axis=1).tolist() == [0, 3, 9]  # input untouched
    probs = np.array([[0.7, 0.2, 0.1]])
    assert flip_labels(probs, 3).tolist() == [[0.1, 0.2, 0.7]]


def test_flip_labels_integer_ids() -> None:
    ids = np.array([0, 1, 3], dtype=np.int32)
    flipped = flip_labels(ids, num_classes=4)
    assert flipped.tolist() == [3, 2, 0] and flipped.dtype == np.int32
    assert ids.tolist() == [0, 1, 3]
    assert flip_labels(np.array([[0], [2]]), num_classes=3).tolist() == [[2], [0]]


@pytest.mark.parametrize(("labels", "classes", "message"), [
    (np.array([0, 1]), None, "need num_classes"),
    (np.array([0, 4]), 4, r"class ids must lie in \[0, 4\)"),
    (np.array([0.0, 1.0]), 2, "rows or integer class ids"),
    (np.eye(3), 4, "3 columns, not 4 classes"),
])
def test_flip_labels_refuses(labels: np.ndarray, classes: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flip_labels(labels, classes)
