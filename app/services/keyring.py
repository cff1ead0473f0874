"""Who is calling (Principal) and the in-memory cache of verified keys (KeyRing)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from app.db.tables import utcnow


@dataclass(frozen=True)
class Principal:
    """The caller: the admin (or anyone, when the service runs open) or one user."""

    user_id: str | None
    admin: bool

    def may_see(self, owner: str) -> bool:
        """Whether objects of user `owner` are visible to this caller."""
        return self.admin or self.user_id == owner


ADMIN = Principal(None, True)


class KeyRing:
    """Verified keys cached in memory, so the per-step path reads no database row.

    Revocation removes the entry here at once; last use is flushed in the background.
    """

    def __init__(self) -> None:
        self._by_prefix: dict[str, tuple[str, str, str]] = {}  # prefix -> (hash, user, id)
        self._used: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def get(self, prefix: str) -> tuple[str, str, str] | None:
        return self._by_prefix.get(prefix)

    def put(self, prefix: str, entry: tuple[str, str, str]) -> None:
        with self._lock:
            self._by_prefix[prefix] = entry

    def drop(self, prefix: str) -> None:
        with self._lock:
            self._by_prefix.pop(prefix, None)

    def mark_used(self, key_id: str) -> None:
        self._used[key_id] = utcnow()

    def take_used(self) -> dict[str, datetime]:
        with self._lock:
            used, self._used = self._used, {}
        return used
