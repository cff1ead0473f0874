"""Browser sign-in for the pages: a key is exchanged once for a random session token kept in
an HttpOnly cookie. Only the token's sha256 is held here (never the key, never the token),
with the sha256 of the key it stands for, so revoking the key or signing out ends it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from app.db.tables import KeyRow
from app.services import keys
from app.services.context import Context
from app.services.keyring import ADMIN, Principal

COOKIE = "fleetlite_session"
LIFETIME_S = 12 * 3600  # a working day; signing in again costs one paste of the key
MAX_SESSIONS = 10_000  # a bound on memory: the oldest go first


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    user_id: str | None  # None: the admin
    prefix: str | None  # the key's lookup prefix (None for the admin token)
    key_hash: str  # sha256 of the key (or of the admin token) it was opened with
    expires: float  # time.monotonic()


class SessionBook:
    """The open browser sessions of one service, by the sha256 of their token."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}  # owned by _lock
        self._lock = threading.Lock()

    def open(self, entry: _Entry) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            while len(self._entries) >= MAX_SESSIONS:
                self._entries.pop(next(iter(self._entries)))
            self._entries[_sha(token)] = entry
        return token

    def find(self, token: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(_sha(token))
            if entry is not None and entry.expires < time.monotonic():
                self._entries.pop(_sha(token), None)
                return None
        return entry

    def close(self, token: str) -> None:
        with self._lock:
            self._entries.pop(_sha(token), None)


_BOOKS: dict[int, tuple[Context, SessionBook]] = {}  # by id(ctx); the ctx kept so ids stay unique
_BOOKS_LOCK = threading.Lock()


def book(ctx: Context) -> SessionBook:
    """The session book of this service (one per context)."""
    with _BOOKS_LOCK:
        found = _BOOKS.get(id(ctx))
        if found is None or found[0] is not ctx:
            found = _BOOKS[id(ctx)] = (ctx, SessionBook())
        return found[1]


def sign_in(ctx: Context, key: str) -> str | None:
    """A new session token for a valid key (the admin token or a user's), else None."""
    key = key.strip()
    found = keys.authenticate(ctx, key) if key else None
    if found is None or ctx.settings.admin_token is None:
        return None
    entry = _Entry(found.user_id, keys.key_prefix(key) if not found.admin else None,
                   _sha(key), time.monotonic() + LIFETIME_S)
    return book(ctx).open(entry)


def sign_out(ctx: Context, token: str) -> None:
    """End the session at once."""
    book(ctx).close(token)


def principal(ctx: Context, token: str) -> Principal | None:
    """Who a session token stands for, while its key is still valid; None otherwise (may read
    the database once, when the key is no longer in the key cache)."""
    entry = book(ctx).find(token)
    if entry is None:
        return None
    if entry.prefix is None:  # the admin token: valid while it is still the admin token
        admin = ctx.settings.admin_token
        ok = admin is not None and hmac.compare_digest(
            entry.key_hash, _sha(admin.get_secret_value()))
        return ADMIN if ok else None
    cached = ctx.keys.get(entry.prefix)
    if cached is None:
        with ctx.db.begin() as db:
            row = db.scalar(select(KeyRow).where(KeyRow.prefix == entry.prefix))
        if row is None:  # revoked
            sign_out(ctx, token)
            return None
        cached = (row.key_hash, row.user_id, row.id)
        ctx.keys.put(entry.prefix, cached)
    if not hmac.compare_digest(cached[0], entry.key_hash):
        return None
    return Principal(cached[1], False)


# What a page reads: the fleet GETs and their event streams, nothing that writes
_REACHES = re.compile(r"^/v1/(fleets/[^/]+(/(events|rounds|clients(/\d+)?|report|report\.html))?"
                      r"|users/[^/]+/fleets)$")


def reaches(method: str, path: str) -> bool:
    """Whether a session cookie may authorize this request (GET routes the pages read)."""
    return method in ("GET", "HEAD") and _REACHES.match(path) is not None
