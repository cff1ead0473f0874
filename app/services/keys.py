"""Per-user API keys and the admin token: who is calling, and what they may reach."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update

from app.db.tables import KeyRow, new_id
from app.errors import NotFound
from app.services.context import Context
from app.services.keyring import ADMIN, Principal
from app.services.pages import Page, paginate

KEY_PREFIX = "flk_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(token: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = token[len(KEY_PREFIX):].partition("_")
    return prefix if len(prefix) == 8 and len(secret) >= 32 else None


def authenticate(ctx: Context, token: str | None) -> Principal | None:
    """The principal a bearer token stands for, or None when it stands for nobody."""
    admin = ctx.settings.admin_token
    if admin is None:
        return ADMIN  # open mode
    if not token:
        return None
    if hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return ADMIN
    prefix = key_prefix(token)
    if prefix is None:
        return None
    entry = ctx.keys.get(prefix)
    if entry is None:
        with ctx.db.begin() as db:
            row = db.scalar(select(KeyRow).where(KeyRow.prefix == prefix))
        if row is None:
            return None
        entry = (row.key_hash, row.user_id, row.id)
        ctx.keys.put(prefix, entry)
    if not hmac.compare_digest(entry[0], _hash(token)):
        return None
    ctx.keys.mark_used(entry[2])
    return Principal(entry[1], False)


def create(ctx: Context, *, user_id: str) -> tuple[KeyRow, str]:
    """A new key for the user; the key itself is returned this once and never stored."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = KeyRow(id=new_id("key"), user_id=user_id, prefix=prefix, key_hash=_hash(key))
    with ctx.db.begin() as db:
        db.add(row)
    return row, key


def get_all(ctx: Context, *, user_id: str, limit: int, cursor: str | None) -> Page[KeyRow]:
    """A user's keys (ids, prefixes, dates; never the keys)."""
    flush_last_used(ctx)
    with ctx.db.begin() as db:
        return paginate(db, select(KeyRow).where(KeyRow.user_id == user_id), KeyRow.id,
                        limit=limit, cursor=cursor)


def delete(ctx: Context, *, user_id: str, key_id: str) -> None:
    """Revoke a key; it stops working at once."""
    with ctx.db.begin() as db:
        row = db.get(KeyRow, key_id)
        if row is None or row.user_id != user_id:
            raise NotFound(f"key '{key_id}' not found")
        db.delete(row)
    ctx.keys.drop(row.prefix)


def flush_last_used(ctx: Context) -> None:
    """Write the keys' last use, collected in memory, to their rows."""
    used = ctx.keys.take_used()
    if not used:
        return
    with ctx.db.begin() as db:
        for key_id, at in used.items():
            db.execute(update(KeyRow).where(KeyRow.id == key_id).values(last_used_at=at))
