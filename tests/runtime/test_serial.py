"""SerialExecutor: per-session FIFO over a real, shared ThreadPoolExecutor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait

import pytest

from app.runtime.serial import SerialExecutor

WAIT = 30  # generous bound so a bug fails the test instead of hanging the run


def settles_to_idle(strand: SerialExecutor) -> bool:
    """Whether the strand reports nothing queued or running once its drain has returned."""
    deadline = time.monotonic() + WAIT
    while strand.pending and time.monotonic() < deadline:
        time.sleep(0.001)
    return strand.pending == 0


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(8, thread_name_prefix="test-serial")
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_one_at_a_time_and_fifo_per_submitter(pool: ThreadPoolExecutor) -> None:
    strand = SerialExecutor(pool)
    lock = threading.Lock()
    active = 0
    max_active = 0
    ran: list[tuple[int, int]] = []

    def task(submitter: int, seq: int) -> int:
        nonlocal active, max_active
        with lock:
            active += 1
            max_active = max(max_active, active)
        time.sleep(0.0002)  # widen the window in which an overlap would show
        ran.append((submitter, seq))  # unlocked on purpose: serial execution makes it safe
        with lock:
            active -= 1
        return submitter * 1000 + seq

    submitters, per_submitter = 5, 100
    futures: dict[tuple[int, int], Future[int]] = {}
    start = threading.Barrier(submitters)

    def submit_all(submitter: int) -> None:
        start.wait(WAIT)
        for seq in range(per_submitter):
            futures[(submitter, seq)] = strand.submit(task, submitter, seq)

    threads = [threading.Thread(target=submit_all, args=(i,)) for i in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(futures) == submitters * per_submitter == 500
    done, not_done = wait(futures.values(), timeout=WAIT)
    assert not not_done
    for (submitter, seq), fut in futures.items():
        assert fut.result() == submitter * 1000 + seq
    assert max_active == 1
    assert len(ran) == 500
    for submitter in range(submitters):
        assert [seq for s, seq in ran if s == submitter] == list(range(per_submitter))
    assert settles_to_idle(strand)


def test_fifo_across_more_than_one_batch(pool: ThreadPoolExecutor) -> None:
    # _drain yields the pool thread every 64 calls; order must survive the hand-over.
    strand = SerialExecutor(pool)
    started, gate = threading.Event(), threading.Event()
    out: list[int] = []

    def hold() -> None:
        started.set()
        gate.wait(WAIT)

    try:
        first = strand.submit(hold)
        assert started.wait(WAIT)
        futures = [strand.submit(out.append, i) for i in range(200)]
        assert strand.pending == 201  # 200 queued and one running
    finally:
        gate.set()
    first.result(WAIT)
    _, not_done = wait(futures, timeout=WAIT)
    assert not not_done
    assert out == list(range(200))
    assert settles_to_idle(strand)


def test_two_strands_run_concurrently() -> None:
    small = ThreadPoolExecutor(2)
    try:
        barrier = threading.Barrier(2, timeout=10)
        a, b = SerialExecutor(small), SerialExecutor(small)
        fa = a.submit(barrier.wait)
        fb = b.submit(barrier.wait)
        # Each raises BrokenBarrierError unless both are inside a task at the same time.
        assert {fa.result(WAIT), fb.result(WAIT)} == {0, 1}
    finally:
        small.shutdown(wait=True)


def test_exception_propagates_and_later_tasks_still_run(pool: ThreadPoolExecutor) -> None:
    strand = SerialExecutor(pool)

    def boom() -> None:
        raise ValueError("boom")

    def add(a: int, *, b: int = 0, c: int = 0) -> int:
        return a + b + c

    failing = strand.submit(boom)
    after = strand.submit(add, 1, b=2, c=3)
    with pytest.raises(ValueError, match="boom"):
        failing.result(WAIT)
    assert after.result(WAIT) == 6
    assert strand.submit(add, 10).result(WAIT) == 10


def test_base_exception_is_delivered_not_lost(pool: ThreadPoolExecutor) -> None:
    strand = SerialExecutor(pool)

    def interrupt() -> None:
        raise KeyboardInterrupt

    fut = strand.submit(interrupt)
    with pytest.raises(KeyboardInterrupt):
        fut.result(WAIT)
    assert strand.submit(lambda: "alive").result(WAIT) == "alive"


def test_cancelled_pending_future_is_skipped(pool: ThreadPoolExecutor) -> None:
    strand = SerialExecutor(pool)
    gate = threading.Event()
    calls: list[str] = []
    blocker = strand.submit(gate.wait, WAIT)
    skipped = strand.submit(calls.append, "cancelled")
    kept = strand.submit(calls.append, "kept")
    assert skipped.cancel()
    gate.set()
    kept.result(WAIT)
    assert blocker.result(WAIT) is True
    assert calls == ["kept"]
    assert skipped.cancelled()
    with pytest.raises(CancelledError):
        skipped.result(0)


def test_running_future_cannot_be_cancelled(pool: ThreadPoolExecutor) -> None:
    strand = SerialExecutor(pool)
    started, gate = threading.Event(), threading.Event()

    def hold() -> str:
        started.set()
        gate.wait(WAIT)
        return "finished"

    fut = strand.submit(hold)
    assert started.wait(WAIT)
    assert not fut.cancel()
    gate.set()
    assert fut.result(WAIT) == "finished"


def test_pool_shutdown_completes_or_fails_every_queued_call() -> None:
    pool = ThreadPoolExecutor(1)
    strand = SerialExecutor(pool)
    gate = threading.Event()
    futures = [strand.submit(gate.wait, WAIT)] + [strand.submit(int, i) for i in range(100)]
    stopper = threading.Thread(target=pool.shutdown, kwargs={"wait": True})
    stopper.start()
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    # The pool has no threads left: whatever is not done now never will be.
    assert all(f.done() for f in futures), sum(not f.done() for f in futures)


def test_submit_after_pool_shutdown_keeps_failing() -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown(wait=True)
    strand = SerialExecutor(pool)
    for i in range(3):  # every call fails at once; none is handed out as pending forever
        fut = strand.submit(int, i)
        assert fut.done()
        assert isinstance(fut.exception(), RuntimeError)


def test_run_or_submit_runs_only_measured_cheap_calls_inline() -> None:
    pool = ThreadPoolExecutor(2)
    strand = SerialExecutor(pool)
    here = threading.get_ident()

    def where(delay: float = 0.0) -> int:
        time.sleep(delay)
        return threading.get_ident()

    def idle_then(call: Callable[[], int]) -> int:
        """Wait (on the strand's own state, not the clock) until the strand has let its
        pool thread go, then make the call: only an idle strand may run a call inline."""
        deadline = time.monotonic() + 30
        while strand.busy:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return call()

    first = strand.run_or_submit(where, inline_below=0.01).result(timeout=5)
    assert first != here  # nothing measured yet: the first call goes to the pool
    assert idle_then(lambda: strand.run_or_submit(where, inline_below=0.01).result()) == here
    for _ in range(10):  # calls turn slow (30 ms, three times the bound): the average rises
        idle_then(lambda: strand.run_or_submit(lambda: where(0.03), inline_below=0.01).result())
    assert idle_then(lambda: strand.run_or_submit(where, inline_below=0.01).result()) != here
    pool.shutdown()


def test_submitted_calls_do_not_feed_the_inline_average() -> None:
    """Saves and job turns come through submit: however long they take, a cheap per-step
    session stays cheap."""
    pool = ThreadPoolExecutor(1)
    strand = SerialExecutor(pool)
    strand.run_or_submit(lambda: None, inline_below=0.01).result(timeout=5)
    cheap = strand.avg_seconds
    assert cheap is not None and cheap < 0.01
    strand.submit(time.sleep, 0.05).result(timeout=5)
    assert strand.avg_seconds == cheap
    pool.shutdown()
