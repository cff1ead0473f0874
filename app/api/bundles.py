"""Phone readiness reports of models, and app bundles of sessions and fleets."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["models"])
