"""The built-in device catalogue of the virtual clock."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.schemas.fleets import Catalogue
from app.services import fleet

router = APIRouter(tags=["devices"])


@router.get("/v1/devices", response_model=Catalogue, summary="The device catalogue")
def list_devices() -> dict[str, Any]:
    """Device classes with their figures, each with its source or marked as an assumption,
    and the default mix a fleet draws its devices from."""
    return fleet.catalogue()
