"""Per-session FIFO execution on a shared thread pool."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
_Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class SerialExecutor:
    """Runs submitted callables one at a time, in submission order, on a shared pool.

    Many sessions share a few threads; one session's calls never overlap, because
    a tf.lite.Interpreter must never be called from two threads at once.
    """

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._queue: deque[_Task] = deque()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue fn(*args, **kwargs) behind everything already submitted."""
        fut: Future[T] = Future()
        with self._lock:
            self._queue.append((fut, fn, args, kwargs))
            if not self._running:
                self._running = True
                self._pool.submit(self._drain)
        return fut

    @property
    def pending(self) -> int:
        """Calls queued or running."""
        with self._lock:
            return len(self._queue) + (1 if self._running else 0)

    def _drain(self) -> None:
        # Run a bounded batch, then yield the pool thread so other sessions get a turn.
        for _ in range(64):
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                fut, fn, args, kwargs = self._queue.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(exc)
        self._pool.submit(self._drain)
