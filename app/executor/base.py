"""The executor interface: what runner work is, and what runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.runtime.pool import Arrays, LiveSession, Snapshot
from app.runtime.runner import Hooks, Plan


@dataclass(frozen=True)
class TrainingWork:
    """Epochs of one session over a dataset: a job. `live` is the session in this process
    (a remote executor restores each epoch's checkpoint into it, so it keeps serving);
    `model_key` and `dataset_key` let a remote worker fetch the same bytes from the store."""

    live: LiveSession
    arrays: Arrays
    plan: Plan
    model_key: str
    dataset_key: str


class Executor(Protocol):
    """Runs runner work; every implementation gives bit-identical weights for the same work."""

    def train(self, work: TrainingWork, hooks: Hooks[Snapshot]) -> bool:
        """Run the plan, reporting to hooks; True when every epoch ran, False if stopped."""

    def shutdown(self) -> None:
        """Release workers; work under way was stopped by its hooks first."""
