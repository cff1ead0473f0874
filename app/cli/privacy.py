"""`fleetlite privacy ...`: the privacy planner."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from app.cli.api import fail
from app.cli.groups import Typer
from app.cli.output import fields, show
from app.cli.state import api

privacy_app = Typer(help="Differential privacy: epsilon of a schedule, or the noise it needs.")


class Sampling(StrEnum):
    """How a round picks its devices."""

    poisson = "poisson"
    without_replacement = "without_replacement"


class Accountant(StrEnum):
    """Which accountant composes the rounds."""

    rdp = "rdp"
    pld = "pld"


def render_answer(a: dict[str, Any]) -> None:
    """A planner answer."""
    fields([("epsilon", f"{a['epsilon']:.6g}"), ("delta", f"{a['delta']:g}"),
            ("noise", f"{a['noise_multiplier']:g}"),
            ("schedule", f"{a['per_round']} of {a['population']} devices a round "
                         f"({a['sampling']}, q = {a['sampling_probability']:.4g}), "
                         f"{a['rounds']} rounds"),
            ("accountant", f"{a['accountant']}, {a['neighbouring'].replace('_', ' ')} "
                           f"(event noise multiplier {a['event_noise_multiplier']:g})")])


@privacy_app.command("epsilon")
def privacy_epsilon(
    ctx: typer.Context,
    population: Annotated[int, typer.Option("--population", "-N", help="Devices that can be "
                                            "picked.", show_default=False)],
    per_round: Annotated[int, typer.Option("--per-round", "-m", help="Devices a round counts "
                                           "(Poisson: expected).", show_default=False)],
    rounds: Annotated[int, typer.Option("--rounds", "-r", show_default=False)],
    noise_multiplier: Annotated[float | None, typer.Option(
        "--noise-multiplier", "-z", show_default=False, help="Answer its epsilon.")] = None,
    target_epsilon: Annotated[float | None, typer.Option(
        "--target-epsilon", "-e", show_default=False,
        help="Answer the smallest noise multiplier (3 significant digits) that meets it.")]
    = None,
    delta: Annotated[float, typer.Option("--delta")] = 1e-5,
    sampling: Annotated[Sampling, typer.Option("--sampling")] = Sampling.without_replacement,
    accountant: Annotated[Accountant, typer.Option("--accountant",
                                                   help="pld: Poisson only.")] = Accountant.rdp,
) -> None:
    """Epsilon at --delta of a DP-FedAvg schedule, or the noise multiplier a target needs."""
    if (noise_multiplier is None) == (target_epsilon is None):
        fail("give exactly one of --noise-multiplier and --target-epsilon")
    body: dict[str, Any] = {"population": population, "per_round": per_round, "rounds": rounds,
                            "delta": delta, "sampling": sampling.value,
                            "accountant": accountant.value}
    if noise_multiplier is not None:
        body["noise_multiplier"] = noise_multiplier
    else:
        body["target_epsilon"] = target_epsilon
    show(ctx, api(ctx).json("POST", "/v1/privacy/epsilon", json=body), render_answer)
