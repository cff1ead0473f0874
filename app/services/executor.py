"""Where jobs run. The API and services talk to the JobExecutor interface only, so a
distributed engine can run the same jobs across machines without touching either."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("fleetlite.jobs")


@dataclass
class JobState:
    """Live progress of a job in this process; the DB row is updated at epoch ends."""

    job_id: str
    status: str = "queued"
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    epoch_loss: list[float | None] = field(default_factory=list)  # None: not finite
    checkpoint_ids: list[str] = field(default_factory=list)
    error: str | None = None
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def interrupted(self) -> bool:
        """Cancel or stop asked: the job ends after the step under way."""
        return self.cancel.is_set() or self.stop.is_set()

    def touch(self) -> None:
        """Mark a change, so event streams send an update."""
        self.version += 1


class JobExecutor(Protocol):
    """Runs jobs by id; each job reads what it needs from the database itself."""

    def submit(self, job_id: str) -> JobState: ...
    def state(self, job_id: str) -> JobState | None: ...
    def cancel(self, job_id: str) -> bool: ...
    def shutdown(self) -> None: ...


class LocalJobExecutor:
    """A thread per running job; interpreter work goes through each session's strand."""

    def __init__(self, run: RunJob, workers: int) -> None:
        self._run = run
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="job")
        self._states: dict[str, JobState] = {}
        self._lock = threading.Lock()

    def submit(self, job_id: str) -> JobState:
        """Queue a job; it starts when a worker is free."""
        with self._lock:
            state = self._states.get(job_id)
            if state is None:
                state = self._states[job_id] = JobState(job_id)
        self._pool.submit(self._guarded, state)
        return state

    def state(self, job_id: str) -> JobState | None:
        """The live state of a job this process runs or ran."""
        return self._states.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop after its current step; False if this process does not run it."""
        state = self._states.get(job_id)
        if state is None:
            return False
        state.cancel.set()
        return True

    def shutdown(self) -> None:
        """Stop running jobs at the next step, leaving them resumable, and wait for them."""
        for state in list(self._states.values()):
            state.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _guarded(self, state: JobState) -> None:
        try:
            self._run(state)
        except Exception:  # the runner records failures itself; this is the last resort
            log.exception("job %s crashed", state.job_id)
        finally:
            if state.status not in ("queued", "running"):  # the row has the rest
                with self._lock:
                    self._states.pop(state.job_id, None)


class RunJob(Protocol):
    """The function that runs one job to an end state (or until stopped)."""

    def __call__(self, state: JobState) -> None: ...
