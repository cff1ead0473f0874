"""Per-session FIFO execution on a shared thread pool."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
# (future, fn, args, kwargs, measured): only calls that may run inline feed the average.
_Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any], bool]


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
        self._executing = 0
        # Moving average of the durations of calls made through run_or_submit (per-step calls),
        # None until one is measured, so a session's first call (perhaps a huge JSON body)
        # never runs on the event loop. Saves and job turns (submit) do not count: they
        # would make a cheap session look slow, or a slow one cheap.
        self.avg_seconds: float | None = None

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue fn(*args, **kwargs) behind everything already submitted."""
        return self._enqueue(fn, args, kwargs, False)

    def _enqueue(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any],
                 measured: bool) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            self._queue.append((fut, fn, args, kwargs, measured))
            if self._running:
                return fut
            self._running = True
        try:
            self._pool.submit(self._drain)
        except RuntimeError:  # the pool is shut down: nothing will ever run this queue
            self._fail_all(RuntimeError("the runtime is shutting down"))
        return fut

    def run_or_submit(self, fn: Callable[[], T], *, inline_below: float) -> Future[T]:
        """Run fn on this thread when the strand is idle and its calls average under
        inline_below seconds; queue it otherwise. The result is a Future either way.

        A sub-millisecond interpreter call costs less than the two thread hand-offs a
        pool needs, so the event loop runs it itself; slow models still go to the pool.
        """
        with self._lock:
            avg = self.avg_seconds
            inline = not self._running and avg is not None and avg < inline_below
            if inline:
                self._running, self._executing = True, 1
        if not inline:
            return self._enqueue(fn, (), {}, True)
        fut: Future[T] = Future()
        try:
            self._run((fut, fn, (), {}, True))
        finally:
            with self._lock:
                self._executing = 0
                self._running = bool(self._queue)
                more = self._running
            if more:  # calls queued by other threads meanwhile
                try:
                    self._pool.submit(self._drain)
                except RuntimeError:
                    self._drain(batch=None)
        return fut

    @property
    def pending(self) -> int:
        """Calls queued or running."""
        with self._lock:
            return len(self._queue) + self._executing

    @property
    def busy(self) -> bool:
        """A call is queued or running, or a pool thread still holds the strand."""
        with self._lock:
            return self._running or bool(self._queue)

    def waiting(self) -> bool:
        """Calls queued behind the one running (cheap: no lock, for per-step checks)."""
        return bool(self._queue)

    def _drain(self, batch: int | None = 64) -> None:
        # Run a bounded batch, then yield the pool thread so other sessions get a turn.
        ran = 0
        while batch is None or ran < batch:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                task = self._queue.popleft()
                self._executing = 1
            try:
                self._run(task)
            finally:
                with self._lock:
                    self._executing = 0
            ran += 1
        try:
            self._pool.submit(self._drain)
        except RuntimeError:  # the pool is shutting down: finish the queue on this thread
            self._drain(batch=None)

    def _run(self, task: _Task) -> None:
        fut, fn, args, kwargs, measured = task
        if fut.set_running_or_notify_cancel():
            started = time.perf_counter()
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(exc)
            if measured:
                took = time.perf_counter() - started
                avg = self.avg_seconds
                self.avg_seconds = took if avg is None else avg + 0.2 * (took - avg)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            tasks, self._queue = list(self._queue), deque()
            self._running = False
        for fut, *_ in tasks:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(exc)
