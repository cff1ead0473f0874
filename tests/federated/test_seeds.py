"""Seeded generators: one stream per (seed, purpose, ids), reproducible."""

from __future__ import annotations

import pytest

from app.federated.seeds import generator


def draw(seed: int, purpose: str, *ids: int) -> list[int]:
    return generator(seed, purpose, *ids).integers(0, 2**32, 4).tolist()


def test_generator_same_arguments_same_stream() -> None:
    assert draw(3, "holdout", 7) == draw(3, "holdout", 7)


def test_generator_streams_differ_by_seed_purpose_and_ids() -> None:
    streams = [draw(3, "holdout", 7), draw(4, "holdout", 7), draw(3, "sample", 7),
               draw(3, "holdout", 8), draw(3, "noise", 7, 1), draw(3, "noise", 1, 7)]
    assert len({tuple(s) for s in streams}) == len(streams)


def test_generator_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        generator(-1, "holdout")
    with pytest.raises(ValueError, match=">= 0"):
        generator(0, "holdout", -2)
