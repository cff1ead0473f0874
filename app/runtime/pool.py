"""The live sessions of this process, in least recently used order, and the threads that
run their strands. The LRU order is the pool's, under its lock (app/runtime/README.md)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from app.runtime.serial import SerialExecutor
from app.runtime.session import LiveSession


class SessionPool:
    """The live sessions of this process, in least recently used order, and the threads
    that run their strands."""

    def __init__(self, workers: int, max_live: int = 0) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="interpreter")
        self.max_live = max_live
        self._live: OrderedDict[str, LiveSession] = OrderedDict()  # oldest use first
        self._loading: dict[str, Future[LiveSession]] = {}
        self._evicting: set[str] = set()
        self._lock = threading.Lock()

    def strand(self) -> SerialExecutor:
        """A new FIFO executor on the shared threads."""
        return SerialExecutor(self.executor)

    def get(self, session_id: str) -> LiveSession | None:
        """The live session, if loaded; marks it most recently used."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                self._live.move_to_end(session_id)
        return live

    def get_or_load(self, session_id: str, loader: Callable[[], LiveSession]) -> LiveSession:
        """The live session, loading it once even when many callers ask at the same time."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                self._live.move_to_end(session_id)
                return live
            pending = self._loading.get(session_id)
            owner = pending is None
            if owner:
                pending = self._loading[session_id] = Future()
        assert pending is not None
        if not owner:
            return pending.result()
        try:
            live = loader()
        except BaseException as exc:
            with self._lock:
                del self._loading[session_id]
            pending.set_exception(exc)
            raise
        with self._lock:
            self._live[session_id] = live
            del self._loading[session_id]
        pending.set_result(live)
        return live

    def add(self, live: LiveSession) -> None:
        """Register a session built by its creator."""
        with self._lock:
            self._live[live.id] = live

    def remove(self, session_id: str, live: LiveSession | None = None) -> LiveSession | None:
        """Forget a live session (only that object, when given); its interpreter is freed
        when its last queued call ends."""
        with self._lock:
            self._evicting.discard(session_id)
            current = self._live.get(session_id)
            if current is None or (live is not None and current is not live):
                return None
            return self._live.pop(session_id)

    def remove_mark(self, session_id: str) -> None:
        """An eviction that did not happen: the session may be chosen again later."""
        with self._lock:
            self._evicting.discard(session_id)

    def eviction_candidates(self) -> list[LiveSession]:
        """Least recently used idle sessions beyond max_live, each returned once."""
        if not self.max_live:
            return []
        with self._lock:
            excess = len(self._live) - len(self._evicting) - self.max_live
            chosen: list[LiveSession] = []
            for live in self._live.values():  # oldest use first
                if len(chosen) >= excess:
                    break
                if live.id not in self._evicting and not live.busy:
                    chosen.append(live)
            self._evicting.update(s.id for s in chosen)
            return chosen

    def of_user(self, user_id: str) -> list[LiveSession]:
        """The user's live sessions, least recently used first, not being evicted."""
        with self._lock:
            return [s for s in self._live.values()
                    if s.user_id == user_id and s.id not in self._evicting]

    def claim_for_eviction(self, live: LiveSession) -> bool:
        """Mark one session as being evicted; False if it already is."""
        with self._lock:
            if live.id in self._evicting:
                return False
            self._evicting.add(live.id)
            return True

    def all(self) -> list[LiveSession]:
        """A snapshot of the live sessions."""
        with self._lock:
            return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def shutdown(self) -> None:
        """Finish queued calls and stop the threads."""
        self.executor.shutdown(wait=True)
