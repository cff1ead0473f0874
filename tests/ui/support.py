"""Helpers of the page tests: small named fleets on scikit-learn's digits."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fleets.support import digits, finish, start, upload_dataset


def small_fleet(client: httpx.Client, user: str, model_id: str, dataset_id: str,
                **spec: Any) -> dict[str, Any]:
    """Start a fleet of 6 devices on the digits (overrides in `spec`)."""
    return start(client, user, **{"model_id": model_id, "dataset_id": dataset_id,
                                  "clients": 6, "clients_per_round": 3, "rounds": 3,
                                  "batch_size": 16, "holdout": 0.2, "seed": 3, **spec})


def digits_dataset(client: httpx.Client, user: str, n: int = 240) -> str:
    """The first n digits uploaded as the user's dataset."""
    return upload_dataset(client, user, digits(n))


__all__ = ["digits_dataset", "finish", "small_fleet"]
