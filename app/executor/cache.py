"""A small thread-safe LRU cache for the executors: blobs, parsed checkpoints, datasets,
interpreters."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    """Up to `size` values by key (and, given `cost`, up to `budget` of their summed cost),
    least recently used dropped first; a value is computed outside the lock (two threads
    may compute the same one; the first kept wins)."""

    def __init__(self, size: int, *, cost: Callable[[V], int] | None = None,
                 budget: int = 0) -> None:
        self._size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._cost, self._budget, self._spent = cost, budget, 0  # _spent: under _lock

    def get(self, key: str, make: Callable[[], V]) -> V:
        """The value for key, made (and kept) if missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            if key in self._items:
                value = self._items[key]
                self._items.move_to_end(key)
            else:
                self._add(key, value)
        return value

    def put(self, key: str, value: V) -> None:
        """Keep value for key (replacing what was there)."""
        with self._lock:
            self._drop(key)
            self._add(key, value)

    def _add(self, key: str, value: V) -> None:
        self._items[key] = value
        if self._cost is not None:
            self._spent += self._cost(value)
        while len(self._items) > self._size or (
                self._cost is not None and self._spent > self._budget and self._items):
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        value = self._items.pop(key, None)
        if value is not None and self._cost is not None:
            self._spent -= self._cost(value)
