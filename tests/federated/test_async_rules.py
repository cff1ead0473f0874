"""Staleness weights, FedBuff and FedAsync against a numpy transcription of the papers' formulas.

Each expected value is written out again from docs/api.md ("Asynchronous fleets"), in float64
and in the documented order of operations, so the rules must agree exactly (==), not closely.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from app.federated.async_rules import (
    FedAsync,
    FedBuff,
    Staleness,
    server_update,
    staleness_from_spec,
)

TAUS = list(range(0, 25))


def _weights(seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense/kernel:0": rng.normal(size=(6, 4)).astype(dtype),
            "dense/bias:0": rng.normal(size=(4,)).astype(dtype)}


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0, 2.5])
def test_weigh_staleness_polynomial(exponent):
    s = Staleness("polynomial", exponent=exponent)
    assert [s(t) for t in TAUS] == [(1.0 + t) ** (-exponent) for t in TAUS]
    assert s(0) == 1.0


def test_weigh_staleness_constant():
    assert {Staleness("constant")(t) for t in TAUS} == {1.0}


@pytest.mark.parametrize(("a", "b"), [(10.0, 4.0), (0.5, 0.0), (3.0, 2.5)])
def test_weigh_staleness_hinge(a, b):
    s = Staleness("hinge", a=a, b=b)
    assert [s(t) for t in TAUS] == [1.0 if t <= b else 1.0 / (a * (t - b) + 1.0) for t in TAUS]


def test_weigh_staleness_defaults_are_fedbuffs():
    assert Staleness()(3) == 4.0 ** -0.5
    assert staleness_from_spec(None) == Staleness("polynomial", exponent=0.5)
    assert staleness_from_spec({"kind": "hinge", "a": 10, "b": 4}) == Staleness("hinge", a=10, b=4)


@pytest.mark.parametrize("bad", [{"kind": "linear"}, {"kind": "polynomial", "exponent": -1.0},
                                 {"kind": "hinge", "a": 0.0}, {"kind": "hinge", "b": -1.0}])
def test_reject_staleness_bad(bad):
    with pytest.raises(ValueError):
        Staleness(**bad)


def test_reject_staleness_negative_tau():
    with pytest.raises(ValueError, match="staleness"):
        Staleness()(-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_fedbuff_matches_the_formula(dtype):
    k, lr = 3, 0.7
    starts = [_weights(1, dtype), _weights(2, dtype), _weights(1, dtype)]  # x_t per arrival
    trained = [_weights(10 + i, dtype) for i in range(k)]  # y per arrival
    taus = [0, 2, 5]
    current = _weights(3, dtype)
    rule = FedBuff(buffer_size=k, server_lr=lr, staleness=Staleness("polynomial", exponent=0.5))
    for x_t, y, tau in zip(starts, trained, taus, strict=True):
        assert not rule.full
        rule.add(x_t, y, tau)
    assert rule.full
    got = rule.step(current)
    for name, x in current.items():
        buffer = np.zeros(x.shape)
        for x_t, y, tau in zip(starts, trained, taus, strict=True):
            buffer += (1.0 + tau) ** -0.5 * (y[name].astype(np.float64) - x_t[name])
        want = (x.astype(np.float64) + lr * buffer / k).astype(dtype)
        assert got[name].dtype == dtype
        np.testing.assert_array_equal(got[name], want)
    assert not rule.full and rule.count == 0 and rule.state() == {}


def test_apply_fedbuff_resumed_mid_buffer_bit_identical():
    arrivals = [(_weights(i), _weights(20 + i), i % 3) for i in range(4)]
    whole = FedBuff(buffer_size=4, server_lr=1.3, staleness=Staleness("hinge", a=2.0, b=1.0))
    for x_t, y, tau in arrivals:
        whole.add(x_t, y, tau)
    first = FedBuff(buffer_size=4, server_lr=1.3, staleness=Staleness("hinge", a=2.0, b=1.0))
    for x_t, y, tau in arrivals[:2]:
        first.add(x_t, y, tau)
    saved = {k: np.array(v) for k, v in first.state().items()}
    resumed = FedBuff(buffer_size=4, server_lr=1.3, staleness=Staleness("hinge", a=2.0, b=1.0))
    resumed.load_state(saved)
    assert resumed.count == 2
    for x_t, y, tau in arrivals[2:]:
        resumed.add(x_t, y, tau)
    current = _weights(99)
    a, b = whole.step(current), resumed.step(current)
    for name in current:
        np.testing.assert_array_equal(a[name], b[name])


def test_reject_fedbuff_misuse():
    rule = FedBuff(buffer_size=1)
    with pytest.raises(ValueError, match="not yet due"):
        rule.step(_weights(0))
    with pytest.raises(ValueError, match="variables"):
        rule.add(_weights(0), {"other": np.zeros(3)}, 0)
    rule.add(_weights(0), _weights(1), 0)
    with pytest.raises(ValueError, match="call step first"):
        rule.add(_weights(0), _weights(1), 0)
    with pytest.raises(ValueError, match="unexpected state"):
        FedBuff(buffer_size=2).load_state({"momentum/x": np.zeros(2)})
    with pytest.raises(ValueError, match="inconsistent"):
        FedBuff(buffer_size=2).load_state({"count": np.array(3), "buffer/x": np.zeros(2)})
    with pytest.raises(ValueError):
        FedBuff(buffer_size=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("mixing", "kind", "tau"), [(0.6, "polynomial", 0), (0.6, "polynomial", 7),
                                                    (1.0, "constant", 3), (0.3, "hinge", 9)])
def test_apply_fedasync_matches_the_formula(dtype, mixing, kind, tau):
    staleness = Staleness(kind)
    rule = FedAsync(mixing=mixing, staleness=staleness)
    current, trained = _weights(5, dtype), _weights(6, dtype)
    got = rule.apply(current, trained, tau)
    if kind == "polynomial":
        s = (1.0 + tau) ** -0.5
    elif kind == "hinge":
        s = 1.0 if tau <= 4.0 else 1.0 / (10.0 * (tau - 4.0) + 1.0)
    else:
        s = 1.0
    alpha = mixing * s
    assert rule.alpha(tau) == alpha
    for name, x in current.items():
        want = ((1.0 - alpha) * x.astype(np.float64)
                + alpha * trained[name].astype(np.float64)).astype(dtype)
        np.testing.assert_array_equal(got[name], want)


def test_apply_fedasync_mixing_one_fresh_takes_the_arrival():
    current, trained = _weights(5), _weights(6)
    got = FedAsync(mixing=1.0, staleness=Staleness("constant")).apply(current, trained, 0)
    for name in current:
        np.testing.assert_array_equal(got[name], trained[name])


@pytest.mark.parametrize("mixing", [0.0, -0.1, 1.5, float("nan")])
def test_reject_fedasync_mixing_outside_unit_interval(mixing):
    with pytest.raises(ValueError, match="mixing"):
        FedAsync(mixing=mixing)


def _arrival(client, start_version, tau):
    return SimpleNamespace(client_id=client, start_version=start_version, staleness=tau)


def test_server_update_fedbuff_steps_when_the_buffer_fills():
    versions = {0: _weights(0), 1: _weights(1)}
    trained = {3: _weights(30), 5: _weights(50), 7: _weights(70)}
    arrivals = [_arrival(5, 0, 1), _arrival(3, 1, 0), _arrival(7, 0, 1)]
    rule = FedBuff(buffer_size=3, server_lr=0.8)
    got = server_update(rule, versions[1], arrivals, versions, trained)
    twin = FedBuff(buffer_size=3, server_lr=0.8)
    for a in arrivals:
        twin.add(versions[a.start_version], trained[a.client_id], a.staleness)
    want = twin.step(versions[1])
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    partial = FedBuff(buffer_size=4)
    kept = server_update(partial, versions[1], arrivals, versions, trained)
    assert partial.count == 3  # not full: the global stays, the arrivals wait in the buffer
    for name in kept:
        np.testing.assert_array_equal(kept[name], versions[1][name])


def test_server_update_fedasync_mixes_each_arrival_in_order():
    trained = {1: _weights(11), 2: _weights(12)}
    arrivals = [_arrival(2, 0, 3), _arrival(1, 2, 0)]
    rule = FedAsync(mixing=0.5)
    got = server_update(rule, _weights(0), arrivals, {}, trained)
    want = rule.apply(rule.apply(_weights(0), trained[2], 3), trained[1], 0)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
