"""The executor interface: what runner work is, and what runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.executor.update import ClientUpdate, Outcome, UpdateFailure, UpdateResult
from app.runtime.runner import Hooks, Plan
from app.runtime.session import Arrays, LiveSession, Snapshot

__all__ = ["ClientUpdate", "UpdateResult", "UpdateFailure", "Outcome", "TrainingWork",
           "Executor"]


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
    start_key: str | None  # the session's head when the job starts: its weights (None: initial)
    scratch: Path


class Executor(Protocol):
    """Runs runner work; every implementation gives bit-identical weights for the same work."""

    def train(self, work: TrainingWork, hooks: Hooks[Snapshot]) -> bool:
        """Run the plan, reporting to hooks; True when every epoch ran, False if stopped."""

    def run_updates(self, updates: Sequence[ClientUpdate], stopped: Callable[[], bool]
                    ) -> Iterator[Outcome]:
        """Run a round's client updates in parallel; each one's result or failure in the
        order they finish (the caller aggregates them sorted by client id). Stops between
        steps when stopped() says so, raising update.Interrupted."""

    def shutdown(self) -> None:
        """Release workers; work under way was stopped by its hooks first."""
