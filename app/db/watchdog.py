"""A deadline on every database transaction, enforced from outside the waiting thread.

A PostgreSQL server that is frozen (stopped, swapped out, a hung host) still has a kernel
that accepts connections and acknowledges data, so neither TCP timeouts nor the server's
own statement_timeout ever fire, and libpq waits forever. One watchdog thread keeps the
deadline of each transaction in flight; when one passes, it shuts the connection's socket
down, so the waiting call fails at once with a disconnect (a 503) instead of hanging.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time

log = logging.getLogger("fleetlite.db")


class Watchdog:
    """Shuts down the sockets of transactions that outlive their deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._heap: list[tuple[float, int, int]] = []  # (deadline, token, fd)
        self._live: set[int] = set()
        self._tokens = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, fd: int) -> int:
        """Start the clock for a transaction on socket `fd`; returns the token to release."""
        token = next(self._tokens)
        with self._cond:
            self._live.add(token)
            heapq.heappush(self._heap, (time.monotonic() + self.seconds, token, fd))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def release(self, token: int) -> None:
        """The transaction ended in time."""
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # ended in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, fd = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                # Under the lock: the owner cannot release, return the connection to the
                # pool and have its descriptor reused while the socket is being shut.
                _shut(fd)


def _shut(fd: int) -> None:
    """Shut a socket down under its owner: its blocked read returns at once."""
    try:
        dup = os.dup(fd)
    except OSError:
        return  # closed meanwhile
    try:
        with socket.socket(fileno=dup) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        log.warning("database call past its deadline: connection shut down (database frozen?)")
    except OSError:
        pass
