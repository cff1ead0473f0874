"""The privacy planner: epsilon for a DP-FedAvg schedule, or the noise a target epsilon needs."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import PrincipalDep
from app.schemas.privacy import EpsilonAnswer, EpsilonQuery
from app.services import privacy

router = APIRouter(tags=["privacy"])


@router.post("/v1/privacy/epsilon", response_model=EpsilonAnswer,
             summary="Epsilon of a DP-FedAvg schedule, or the noise it needs",
             description="With `noise_multiplier`: epsilon at `delta` after `rounds` rounds "
             "that each count `per_round` of `population` devices (dp-accounting; RDP, or PLD "
             "for Poisson sampling). With `target_epsilon` instead: the smallest noise "
             "multiplier of 3 significant digits that meets it. `without_replacement` is "
             "accounted under replace-one neighbours (a swap moves the clipped sum by 2C), "
             "`poisson` under add-or-remove-one.")
def plan_epsilon(who: PrincipalDep, body: EpsilonQuery) -> EpsilonAnswer:
    """Epsilon for a noise multiplier, or the noise multiplier for an epsilon."""
    return privacy.plan(body)  # sync def: the accountant's numerics run off the event loop
