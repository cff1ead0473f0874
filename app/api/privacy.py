"""The privacy planner: epsilon for a DP-FedAvg schedule, or the noise a target epsilon needs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["privacy"])
