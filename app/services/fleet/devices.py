"""The device catalogue as the API shows it."""

from __future__ import annotations

from typing import Any

from app.federated import devices


def catalogue() -> dict[str, Any]:
    """The built-in classes, their sources, and the default mix."""
    return devices.catalogue_document()
