"""One thread that writes every job's epoch checkpoints (blob, then rows) while the jobs
go on training: in submission order, so a job's rows only ever name durable epochs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Persister:
    """A single writer thread shared by all jobs."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="persister")

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue a write behind the ones already queued."""
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Finish the writes queued (a job stopped at shutdown waits for its last one)."""
        self._pool.shutdown(wait=True)
