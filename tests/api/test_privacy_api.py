"""The privacy planner over HTTP, and the 422s of the spec's privacy block."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.schemas.privacy import PrivacySpec
from tests.helpers import assert_problem

MNIST: dict[str, Any] = {"population": 60000, "per_round": 150, "rounds": 6000, "delta": 1e-5,
                         "sampling": "poisson"}


def test_plan_epsilon_answers_tensorflow_privacys_figure(client: httpx.Client) -> None:
    r = client.post("/v1/privacy/epsilon", json={**MNIST, "noise_multiplier": 1.3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert round(body["epsilon"], 3) == 0.724
    assert body["epsilon"] == pytest.approx(0.7242234026, abs=1e-10)
    assert body | {"epsilon": 0} == {
        "epsilon": 0, "noise_multiplier": 1.3, "delta": 1e-5, "population": 60000,
        "per_round": 150, "rounds": 6000, "sampling": "poisson", "sampling_probability": 0.0025,
        "accountant": "rdp", "neighbouring": "add_or_remove_one", "event_noise_multiplier": 1.3}


def test_plan_epsilon_finds_the_noise_for_a_target(client: httpx.Client) -> None:
    r = client.post("/v1/privacy/epsilon", json={**MNIST, "target_epsilon": 0.725})
    assert r.status_code == 200, r.text
    assert r.json()["noise_multiplier"] == 1.3 and r.json()["epsilon"] <= 0.725


def test_plan_epsilon_without_replacement_by_default(client: httpx.Client) -> None:
    body = {"population": 100, "per_round": 10, "rounds": 20, "noise_multiplier": 1.0}
    r = client.post("/v1/privacy/epsilon", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["sampling"] == "without_replacement" and got["neighbouring"] == "replace_one"
    assert got["event_noise_multiplier"] == 0.5 and got["delta"] == 1e-5


def test_plan_epsilon_with_pld(client: httpx.Client) -> None:
    r = client.post("/v1/privacy/epsilon",
                    json={**MNIST, "noise_multiplier": 1.3, "accountant": "pld"})
    assert r.status_code == 200, r.text
    assert 0.6 < r.json()["epsilon"] < 0.724  # tighter than RDP


@pytest.mark.parametrize(("change", "needle"), [
    ({"noise_multiplier": 1.0, "target_epsilon": 1.0}, "exactly one of noise_multiplier"),
    ({}, "exactly one of noise_multiplier"),
    ({"noise_multiplier": 0.0}, "noise_multiplier"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"),
    ({"target_epsilon": 0.0}, "target_epsilon"),
    ({"noise_multiplier": 1.0, "delta": 0.0}, "delta"),
    ({"noise_multiplier": 1.0, "delta": 1.0}, "delta"),
    ({"noise_multiplier": 1.0, "per_round": 60001}, "per_round (60001) must be at most"),
    ({"noise_multiplier": 1.0, "population": 0}, "population"),
    ({"noise_multiplier": 1.0, "rounds": 0}, "rounds"),
    ({"noise_multiplier": 1.0, "sampling": "shuffled"}, "sampling"),
    ({"noise_multiplier": 1.0, "sampling": "without_replacement", "accountant": "pld"},
     "accountant: pld applies to poisson sampling only"),
    ({"noise_multiplier": 1.0, "epochs": 3}, "epochs"),
])
def test_plan_epsilon_refuses_bad_input(client: httpx.Client, change: dict[str, Any],
                                        needle: str) -> None:
    r = client.post("/v1/privacy/epsilon", json={**MNIST, **change})
    assert_problem(r, 422, needle)


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity"])
def test_plan_epsilon_refuses_non_finite_numbers(client: httpx.Client, word: str) -> None:
    text = json.dumps({**MNIST, "noise_multiplier": 1.0}).replace('"delta": 1e-05',
                                                                  f'"delta": {word}')
    r = client.post("/v1/privacy/epsilon", content=text,
                    headers={"content-type": "application/json"})
    assert_problem(r, 422, "delta")


def _errors(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        PrivacySpec.model_validate(spec)
    return "; ".join(".".join(str(p) for p in e["loc"]) for e in info.value.errors())


FIXED: dict[str, Any] = {"noise_multiplier": 1.0, "clipping": {"kind": "fixed", "norm": 1.0}}
ADAPTIVE: dict[str, Any] = {"noise_multiplier": 1.0, "clipping": {"kind": "adaptive"}}


def test_privacy_spec_takes_the_issues_defaults() -> None:
    spec = PrivacySpec.model_validate(ADAPTIVE)
    assert spec.model_dump() == {
        "noise_multiplier": 1.0, "placement": "server", "delta": 1e-5, "max_epsilon": None,
        "clipping": {"kind": "adaptive", "initial_norm": 0.1, "target_unclipped_quantile": 0.5,
                     "learning_rate": 0.2, "count_stddev": None}}


@pytest.mark.parametrize(("spec", "field"), [
    ({**FIXED, "noise_multiplier": -0.1}, "noise_multiplier"),
    ({**FIXED, "clipping": {"kind": "fixed", "norm": 0.0}}, "clipping.fixed.norm"),
    ({**FIXED, "clipping": {"kind": "fixed", "norm": -1.0}}, "clipping.fixed.norm"),
    ({**FIXED, "clipping": {"kind": "adaptive", "initial_norm": 0.0}},
     "clipping.adaptive.initial_norm"),
    ({**FIXED, "clipping": {"kind": "adaptive", "target_unclipped_quantile": 1.1}},
     "clipping.adaptive.target_unclipped_quantile"),
    ({**FIXED, "clipping": {"kind": "adaptive", "target_unclipped_quantile": -0.1}},
     "clipping.adaptive.target_unclipped_quantile"),
    ({**FIXED, "clipping": {"kind": "adaptive", "count_stddev": -1.0}},
     "clipping.adaptive.count_stddev"),
    ({**FIXED, "clipping": {"kind": "median"}}, "clipping"),
    ({**FIXED, "delta": 0.0}, "delta"),
    ({**FIXED, "delta": 1.0}, "delta"),
    ({**FIXED, "max_epsilon": 0.0}, "max_epsilon"),
    ({**FIXED, "placement": "edge"}, "placement"),
    ({**FIXED, "noise_multiplier": float("nan")}, "noise_multiplier"),
    ({**FIXED, "clipping": {"kind": "fixed", "norm": float("inf")}}, "clipping.fixed.norm"),
    ({**FIXED, "max_epsilon": float("inf")}, "max_epsilon"),
    ({**FIXED, "sigma": 1.0}, "sigma"),
])
def test_privacy_spec_names_the_bad_field(spec: dict[str, Any], field: str) -> None:
    assert _errors(spec) == field
