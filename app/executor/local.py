"""The local executor: runner work in this process, each turn in the session's strand."""

from __future__ import annotations

from pathlib import Path

from app.executor.base import TrainingWork
from app.runtime import runner
from app.runtime.pool import Snapshot


class LocalExecutor:
    """Trains on the session's own interpreter; calls on the session interleave with the
    turns (a queued infer waits for one step), since each turn is a task of its strand."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def train(self, work: TrainingWork, hooks: runner.Hooks[Snapshot]) -> bool:
        """Run the plan on work.live; True when every epoch ran."""
        live = work.live
        return runner.run(live, work.arrays, work.plan, hooks,
                          snapshot=lambda: live.snapshot(self.scratch),
                          call=lambda turn: live.strand.submit(turn).result())

    def shutdown(self) -> None:
        """Nothing to release: the threads are the session pool's."""
