"""DP-FedAvg's round math against its formulas, written out here in numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.federated.privacy import (
    DPParams,
    DPState,
    RoundPrivacy,
    clip_delta,
    delta_noise_multiplier,
    global_norm,
    next_clipping_norm,
    noise_multiplier_for,
    privatize,
)
from app.federated.seeds import generator

FIXED = DPParams(noise_multiplier=1.0, clipping="fixed", initial_norm=1.0)


def _deltas(n: int, seed: int = 0, scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(0, scale, (4, 3)).astype(np.float32),
             "b": rng.normal(0, scale, 3).astype(np.float32)} for _ in range(n)]


def _flat(d: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(d[k], np.float64).ravel() for k in sorted(d)])


def test_clip_delta_scales_to_the_norm_over_all_variables() -> None:
    delta = {"b": np.array([3.0, 0.0]), "a": np.array([[0.0, 4.0]])}  # flattened norm 5
    out = clip_delta(delta, 1.0)
    assert out.norm == 5.0 and not out.unclipped
    np.testing.assert_allclose(out.delta["b"], [0.6, 0.0], rtol=1e-15)
    np.testing.assert_allclose(out.delta["a"], [[0.0, 0.8]], rtol=1e-15)
    assert math.isclose(global_norm(out.delta), 1.0, rel_tol=1e-15)


def test_clip_delta_leaves_a_short_delta_alone() -> None:
    delta = {"a": np.array([0.3, 0.4], dtype=np.float32)}
    out = clip_delta(delta, 0.5001)
    assert out.unclipped
    np.testing.assert_array_equal(out.delta["a"], delta["a"].astype(np.float64))


def test_clip_delta_zeroes_a_delta_with_nan_or_infinity() -> None:
    out = clip_delta({"a": np.array([1.0, np.nan]), "b": np.array([np.inf])}, 1.0)
    assert out.norm == math.inf and not out.unclipped
    assert not out.delta["a"].any() and not out.delta["b"].any()


def test_clip_delta_rejects_a_norm_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="clipping norm"):
        clip_delta({"a": np.ones(2)}, 0.0)


def test_privatize_without_noise_is_the_clipped_sum_over_m() -> None:
    deltas = _deltas(5)
    params = DPParams(noise_multiplier=0.0, clipping="fixed", initial_norm=0.7)
    mean, state, info = privatize(deltas, DPState.initial(params), params, seed=1, round=1, m=5)
    clipped = [(v := _flat(d)) * min(1.0, 0.7 / np.linalg.norm(v)) for d in deltas]
    np.testing.assert_allclose(_flat(mean), np.mean(clipped, axis=0), rtol=1e-12, atol=1e-15)
    assert state.clipping_norm == 0.7 and info.noise_std == 0.0


def test_privatize_divides_by_m_when_fewer_report() -> None:
    deltas = _deltas(3, scale=0.01)  # all shorter than C: nothing clipped
    params = DPParams(noise_multiplier=0.0, clipping="fixed", initial_norm=10.0)
    mean, _, info = privatize(deltas, DPState.initial(params), params, seed=1, round=1, m=6)
    np.testing.assert_allclose(_flat(mean), sum(_flat(d) for d in deltas) / 6, rtol=1e-12)
    assert info.unclipped_fraction == 0.5


def test_privatize_adds_the_seeded_noise_exactly() -> None:
    deltas = _deltas(4)
    mean, _, info = privatize(deltas, DPState(clipping_norm=0.5), FIXED, seed=7, round=3, m=4)
    std = 1.0 * 0.5 / 4
    rng = generator(7, "dp-noise", 3)
    noiseless = [clip_delta(d, 0.5).delta for d in deltas]
    for k in ("b", "w"):  # sorted order: b before w
        want = sum(c[k] for c in noiseless) / 4 + rng.normal(0.0, std, mean[k].shape)
        np.testing.assert_allclose(mean[k], want, rtol=1e-12, atol=1e-15)
    assert info == RoundPrivacy(clipping_norm=0.5, unclipped_fraction=0.0, noise_std=std,
                                noise_multiplier=1.0)


def test_privatize_noise_has_the_std_z_c_over_m() -> None:
    zeros = [{"big": np.zeros(200_000)}]
    params = DPParams(noise_multiplier=1.3, clipping="fixed", initial_norm=2.0)
    mean, _, info = privatize(zeros * 10, DPState.initial(params), params, seed=0, round=1, m=10)
    want = 1.3 * 2.0 / 10
    assert info.noise_std == pytest.approx(want)
    assert np.std(mean["big"]) == pytest.approx(want, rel=0.01)  # 200k draws: se ~0.16 %
    assert abs(np.mean(mean["big"])) < 5 * want / math.sqrt(200_000)


def test_privatize_is_the_same_on_the_device_and_on_the_server() -> None:
    deltas = _deltas(20)
    params = DPParams(noise_multiplier=0.8, clipping="adaptive", initial_norm=3.9,
                      placement="client")
    state = DPState.initial(params)
    server = privatize(deltas, state, params, seed=3, round=2, m=20)
    on_device = [clip_delta(d, state.clipping_norm) for d in deltas]
    assert 0 < sum(c.unclipped for c in on_device) < 20
    client = privatize([c.delta for c in on_device], state, params, seed=3, round=2, m=20,
                       unclipped=[c.unclipped for c in on_device])
    for k in server[0]:
        np.testing.assert_array_equal(server[0][k], client[0][k])
    assert server[1:] == client[1:]


def test_privatize_rejects_an_unclipped_upload_from_a_device() -> None:
    with pytest.raises(ValueError, match="not clipped"):
        privatize(_deltas(2, scale=5.0), DPState(clipping_norm=0.1), FIXED, seed=0, round=1,
                  m=2, unclipped=[True, True])
    with pytest.raises(ValueError, match="not clipped"):
        privatize([{"a": np.array([np.nan])}], DPState(clipping_norm=0.1), FIXED, seed=0,
                  round=1, m=1, unclipped=[True])


def test_privatize_reruns_bit_identically_from_a_persisted_state() -> None:
    params = DPParams(noise_multiplier=1.0, clipping="adaptive", initial_norm=0.1)

    def run(rounds: range, state: DPState) -> tuple[list[np.ndarray], DPState]:
        out = []
        for r in rounds:
            mean, state, _ = privatize(_deltas(20, seed=r), state, params, seed=5, round=r, m=20)
            out.append(_flat(mean))
        return out, state

    straight, _ = run(range(1, 7), DPState.initial(params))
    first, mid = run(range(1, 4), DPState.initial(params))
    resumed = DPState.from_dict(json.loads(json.dumps(mid.to_dict())))
    rest, _ = run(range(4, 7), resumed)
    for a, b in zip(straight, first + rest, strict=True):
        np.testing.assert_array_equal(a, b)


def test_delta_noise_multiplier_follows_andrew_et_al() -> None:
    # z = 1, m = 50, count_stddev = m/20 = 2.5: (1 - 5^-2)^(-1/2)
    assert delta_noise_multiplier(1.0, 2.5) == pytest.approx(1 / math.sqrt(1 - 1 / 25), rel=1e-15)
    params = DPParams(noise_multiplier=1.0, clipping="adaptive", initial_norm=0.1)
    assert noise_multiplier_for(params, 50) == delta_noise_multiplier(1.0, 50 / 20)
    assert noise_multiplier_for(FIXED, 50) == 1.0
    assert delta_noise_multiplier(0.0, 2.5) == 0.0


@pytest.mark.parametrize(("z", "count_std"), [(1.0, 0.5), (1.0, 0.4), (2.0, 0.0)])
def test_delta_noise_multiplier_rejects_too_little_count_noise(z: float, count_std: float) -> None:
    with pytest.raises(ValueError, match="count_stddev"):
        delta_noise_multiplier(z, count_std)


def test_next_clipping_norm_is_the_geometric_step() -> None:
    params = DPParams(noise_multiplier=0.0, clipping="adaptive", initial_norm=1.0,
                      target_unclipped_quantile=0.5, learning_rate=0.2)
    assert next_clipping_norm(2.0, 0.9, params) == pytest.approx(2.0 * math.exp(-0.2 * 0.4))
    # too few unclipped: the norm grows (Flower's clipped count would shrink it)
    assert next_clipping_norm(2.0, 0.1, params) > 2.0


def _norm_deltas(norms: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"v": np.array([n, 0.0, 0.0])} for n in norms]


@pytest.mark.parametrize("start", [0.1, 3.0])
def test_adaptive_clipping_converges_to_the_median_norm(start: float) -> None:
    params = DPParams(noise_multiplier=0.0, clipping="adaptive", initial_norm=start,
                      count_stddev=0.0)
    rng = np.random.default_rng(11)
    median = 0.8  # lognormal(log 0.8, 0.5): the true median of the update norms
    state = DPState.initial(params)
    for r in range(1, 101):
        norms = np.exp(rng.normal(math.log(median), 0.5, 100))
        _, state, _ = privatize(_norm_deltas(norms), state, params, seed=0, round=r, m=100)
    assert state.clipping_norm == pytest.approx(median, rel=0.05)


def test_flowers_clipped_count_runs_away_from_the_median() -> None:
    # Flower's rule: C *= exp(-lr * (clipped_fraction - target)); transcribed to show why not
    norms, clip = np.exp(np.random.default_rng(2).normal(math.log(0.8), 0.5, 100)), 0.1
    for _ in range(100):
        clip *= math.exp(-0.2 * (float(np.mean(norms > clip)) - 0.5))
    assert clip < 0.1 / 2  # from 0.1, below the median already, it shrank further
