"""Strategies against their formulas (computed here, independently), state, determinism, 422s."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.federated.strategies import STRATEGIES, Strategy, make_strategy

F64 = dict[str, np.ndarray]


def weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense/kernel": rng.normal(size=(3, 2)).astype(np.float32),
            "dense/bias": rng.normal(size=(2,)).astype(np.float32)}


START = weights(100)
# Three clients in id order: (weights, training examples).
RESULTS = [(weights(1), 10), (weights(2), 30), (weights(3), 60)]


def rounds_of_results(rnd: int) -> list[tuple[dict[str, np.ndarray], int]]:
    """Client results for round rnd: the round's start moved by a client-specific step."""
    return [({k: v + np.float32(0.1 * (i + 1) * (-1) ** rnd) for k, v in weights(10 * rnd + i)
              .items()}, n) for i, n in enumerate((5, 15, 20))]


def mean64(results: list[tuple[dict[str, np.ndarray], int]]) -> F64:
    total = sum(n for _, n in results)
    return {k: np.sum([w[k].astype(np.float64) * n for w, n in results], axis=0) / total
            for k in START}


def run(strategy: Strategy, rounds: range, start: dict[str, np.ndarray]
        ) -> list[dict[str, np.ndarray]]:
    out, current = [], start
    for rnd in rounds:
        current = strategy.aggregate(rnd, current, rounds_of_results(rnd))
        out.append(current)
    return out


def assert_weights(got: dict[str, np.ndarray], want: F64, rtol: float = 1e-6) -> None:
    assert list(got) == list(START)
    for k in START:
        assert got[k].dtype == np.float32 and got[k].shape == START[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=1e-7)


def test_aggregate_fedavg_weighted_by_examples() -> None:
    got = make_strategy({"name": "fedavg"}).aggregate(1, START, RESULTS)
    w = [r[0] for r in RESULTS]
    assert_weights(got, {k: (10 * w[0][k].astype(np.float64) + 30 * w[1][k] + 60 * w[2][k])
                         / 100 for k in START})


def test_aggregate_fedavg_ignores_a_client_without_examples() -> None:
    got = make_strategy({"name": "fedavg"}).aggregate(1, START, [(weights(1), 7),
                                                               (weights(2), 0)])
    assert all(np.array_equal(got[k], weights(1)[k]) for k in START)


@pytest.mark.parametrize("count", [3, 4])
def test_aggregate_fedmedian_coordinatewise_unweighted(count: int) -> None:
    results = [(weights(i), n) for i, n in zip(range(count), (1, 1000, 1, 5), strict=False)]
    got = make_strategy({"name": "fedmedian"}).aggregate(1, START, results)
    for k in START:
        column = np.stack([w[k].astype(np.float64) for w, _ in results])
        want = np.sort(column, axis=0)
        middle = want[1] if count == 3 else (want[1] + want[2]) / 2
        assert np.array_equal(got[k], middle.astype(np.float32))
        assert np.array_equal(got[k], np.median(column, axis=0).astype(np.float32))


def test_aggregate_fedtrimmedavg_drops_both_tails() -> None:
    results = [(weights(i), i + 1) for i in range(5)]
    values = {k: np.stack([w[k].astype(np.float64) for w, _ in results]) for k in START}
    got = make_strategy({"name": "fedtrimmedavg"}).aggregate(1, START, results)  # beta 0.2
    # int(0.2 * 5) = 1 value cut at each end, per coordinate; the examples play no part.
    assert_weights(got, {k: (v.sum(0) - v.min(0) - v.max(0)) / 3 for k, v in values.items()})
    plain = make_strategy({"name": "fedtrimmedavg", "beta": 0.1}).aggregate(1, START, results)
    assert_weights(plain, {k: v.mean(0) for k, v in values.items()})  # int(0.5) = 0 cut


def test_aggregate_robust_rules_ignore_client_order() -> None:
    results = [(weights(i), i + 1) for i in range(6)]
    for name in ("fedmedian", "fedtrimmedavg"):
        a = make_strategy({"name": name}).aggregate(1, START, results)
        b = make_strategy({"name": name}).aggregate(1, START, results[::-1])
        assert all(a[k].tobytes() == b[k].tobytes() for k in START)


def test_aggregate_local_keeps_the_global() -> None:
    got = make_strategy({"name": "local"}).aggregate(3, START, RESULTS)
    assert all(np.array_equal(got[k], START[k]) and got[k] is not START[k] for k in START)


def test_aggregate_fedavgm_default_is_fedavg_bit_for_bit() -> None:
    a = make_strategy({"name": "fedavgm"}).aggregate(1, START, RESULTS)
    b = make_strategy({"name": "fedavg"}).aggregate(1, START, RESULTS)
    assert all(a[k].tobytes() == b[k].tobytes() for k in START)


def test_aggregate_fedavgm_momentum_over_three_rounds() -> None:
    lr, mu = 0.7, 0.9
    got = run(make_strategy({"name": "fedavgm", "server_lr": lr, "momentum": mu}), range(1, 4),
              START)
    x, m = {k: v.astype(np.float64) for k, v in START.items()}, None
    for rnd, g in zip(range(1, 4), got, strict=True):
        avg = mean64(rounds_of_results(rnd))
        grad = {k: x[k] - avg[k] for k in x}
        m = grad if m is None else {k: mu * m[k] + grad[k] for k in x}
        want = {k: x[k] - lr * m[k] for k in x}
        assert_weights(g, want)
        x = {k: g[k].astype(np.float64) for k in x}  # the next round starts from the cast global


def test_aggregate_fedavgm_without_momentum_keeps_no_state() -> None:
    s = make_strategy({"name": "fedavgm", "server_lr": 0.5})
    got = s.aggregate(1, START, RESULTS)
    avg = mean64(RESULTS)
    assert_weights(got, {k: START[k] - 0.5 * (START[k].astype(np.float64) - avg[k]) for k in avg})
    assert s.state() == {}


def adaptive(name: str, p: dict[str, float]) -> list[F64]:
    """FedAdam / FedYogi / FedAdagrad exactly as flwr 1.42 writes them, over three rounds."""
    x = {k: v.astype(np.float64) for k, v in START.items()}
    m = {k: np.zeros_like(v) for k, v in x.items()}
    v = {k: np.zeros_like(a) for k, a in x.items()}
    b1 = 0.0 if name == "fedadagrad" else p["beta_1"]
    out = []
    for rnd in range(1, 4):
        d = {k: mean64(rounds_of_results(rnd))[k] - x[k] for k in x}
        m = {k: b1 * m[k] + (1 - b1) * d[k] for k in x}
        if name == "fedadam":
            v = {k: p["beta_2"] * v[k] + (1 - p["beta_2"]) * d[k] ** 2 for k in x}
            lr = p["server_lr"] * np.sqrt(1 - p["beta_2"] ** (rnd + 1)) / (
                1 - p["beta_1"] ** (rnd + 1))
        elif name == "fedyogi":
            v = {k: v[k] - (1 - p["beta_2"]) * d[k] ** 2 * np.sign(v[k] - d[k] ** 2) for k in x}
            lr = p["server_lr"]
        else:
            v = {k: v[k] + d[k] ** 2 for k in x}
            lr = p["server_lr"]
        new = {k: x[k] + lr * m[k] / (np.sqrt(v[k]) + p["tau"]) for k in x}
        out.append(new)
        x = {k: a.astype(np.float32).astype(np.float64) for k, a in new.items()}
    return out


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_aggregate_adaptive_over_three_rounds(name: str) -> None:
    s = make_strategy({"name": name, "server_lr": 0.3})
    got = run(s, range(1, 4), START)
    for g, want in zip(got, adaptive(name, s.params), strict=True):
        assert_weights(g, want, rtol=1e-5)
    assert sorted(s.state()) == sorted(f"{slot}/{k}" for slot in ("m", "v") for k in START)


@pytest.mark.parametrize(("spec"), [{"name": "fedadam"}, {"name": "fedyogi"},
                                    {"name": "fedadagrad"},
                                    {"name": "fedavgm", "server_lr": 0.5, "momentum": 0.8}])
def test_load_state_continues_bit_identically(spec: dict[str, Any]) -> None:
    whole = run(make_strategy(spec), range(1, 4), START)
    first = make_strategy(spec)
    after_one = run(first, range(1, 2), START)[-1]
    saved = first.state()
    assert saved
    resumed = make_strategy(spec)  # as after a restart: a new object, the saved state
    resumed.load_state(saved)
    for array in saved.values():
        array += 1.0  # neither strategy may share the arrays handed over
    for strategy in (resumed, first):
        rest = run(strategy, range(2, 4), after_one)
        for a, b in zip(whole[1:], rest, strict=True):
            assert all(a[k].tobytes() == b[k].tobytes() for k in START)


def test_load_state_refuses_foreign_arrays() -> None:
    with pytest.raises(ValueError, match="unexpected state array 'x/dense/bias'"):
        make_strategy({"name": "fedadam"}).load_state({"x/dense/bias": np.zeros(2)})


def test_aggregate_same_inputs_same_bits_and_inputs_untouched() -> None:
    before = copy.deepcopy((START, RESULTS))
    for name in STRATEGIES:
        a = run(make_strategy({"name": name}), range(1, 3), START)
        b = run(make_strategy({"name": name}), range(1, 3), START)
        assert [g[k].tobytes() for g in a for k in g] == [g[k].tobytes() for g in b for k in g]
        assert make_strategy({"name": name}).aggregate(1, START, RESULTS).keys() == START.keys()
    for (w0, n0), (w1, n1) in zip(before[1], RESULTS, strict=True):
        assert n0 == n1 and all(np.array_equal(w0[k], w1[k]) for k in START)
    assert all(np.array_equal(before[0][k], START[k]) for k in START)


def test_aggregate_refuses_mismatched_variables() -> None:
    s = make_strategy({"name": "fedavg"})
    with pytest.raises(ValueError, match="client variables"):
        s.aggregate(1, START, [({"dense/kernel": START["dense/kernel"]}, 1)])
    with pytest.raises(ValueError, match="client shape"):
        s.aggregate(1, START, [({**START, "dense/bias": np.zeros(3, np.float32)}, 1)])
    with pytest.raises(ValueError, match="no client results"):
        s.aggregate(1, START, [])


def test_make_strategy_fills_in_flower_defaults() -> None:
    params = {name: make_strategy({"name": name}).params for name in STRATEGIES}
    assert params == {
        "fedavg": {}, "fedmedian": {}, "local": {},
        "fedavgm": {"server_lr": 1.0, "momentum": 0.0},
        "fedadam": {"server_lr": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 0.001},
        "fedyogi": {"server_lr": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 0.001},
        "fedadagrad": {"server_lr": 0.1, "beta_1": 0.0, "beta_2": 0.0, "tau": 0.001},
        "fedtrimmedavg": {"beta": 0.2},
    }
    assert make_strategy({"name": "fedadam", "server_lr": 1}).params["server_lr"] == 1.0


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "fedsgd"}, "strategy.name: unknown strategy 'fedsgd' (known: fedavg, fedavgm, "
                         "fedadam, fedyogi, fedadagrad, fedmedian, fedtrimmedavg, local)"),
    ({}, "strategy.name: missing (known: fedavg,"),
    ({"name": "fedadam", "eta_l": 0.1},
     "strategy.eta_l: unknown parameter for fedadam (it takes server_lr, beta_1, beta_2, tau)"),
    ({"name": "fedavg", "server_lr": 1.0},
     "strategy.server_lr: unknown parameter for fedavg (it takes no parameter)"),
    ({"name": "fedadam", "server_lr": -0.1}, "strategy.server_lr: must be > 0, got -0.1"),
    ({"name": "fedavgm", "server_lr": 0}, "strategy.server_lr: must be > 0"),
    ({"name": "fedavgm", "momentum": 1.0}, "strategy.momentum: must be in [0, 1), got 1.0"),
    ({"name": "fedyogi", "beta_1": 1}, "strategy.beta_1: must be in [0, 1)"),
    ({"name": "fedadam", "beta_2": -0.5}, "strategy.beta_2: must be in [0, 1)"),
    ({"name": "fedadam", "tau": 0}, "strategy.tau: must be > 0"),
    ({"name": "fedadagrad", "beta_1": 0.9},
     "strategy.beta_1: must be 0 for fedadagrad (Flower's FedAdagrad fixes it), got 0.9"),
    ({"name": "fedtrimmedavg", "beta": 0.5}, "strategy.beta: must be in [0, 0.5), got 0.5"),
    ({"name": "fedtrimmedavg", "beta": -0.1}, "strategy.beta: must be in [0, 0.5)"),
    ({"name": "fedadam", "server_lr": "0.1"}, "strategy.server_lr: must be a number, got '0.1'"),
    ({"name": "fedadam", "server_lr": True}, "strategy.server_lr: must be a number"),
    ({"name": "fedadam", "tau": float("nan")}, "strategy.tau: must be a number"),
])
def test_make_strategy_refuses_with_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        make_strategy(spec)
    assert exc.value.detail.startswith(message), exc.value.detail
    assert exc.value.status == 422


def test_make_strategy_accepts_fedadagrad_zero_betas() -> None:
    s = make_strategy({"name": "fedadagrad", "beta_1": 0, "beta_2": 0.0})
    assert s.params["beta_1"] == 0.0 and s.params["beta_2"] == 0.0


def test_aggregate_fedmedian_survives_a_minority_of_nan_clients() -> None:
    bad = {k: np.full_like(v, np.nan) for k, v in START.items()}
    results = [(weights(1), 1), (bad, 1), (weights(2), 1)]
    got = make_strategy({"name": "fedmedian"}).aggregate(1, START, results)
    assert all(np.array_equal(got[k], np.maximum(weights(1)[k], weights(2)[k])) for k in START)
