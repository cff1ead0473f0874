"""Per-user API keys; admin only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response

from app.api.auth import PrincipalDep, require_admin
from app.api.deps import CtxDep, Cursor, Limit, UserId, listed
from app.schemas.common import ListOf, Schema
from app.services import keys

router = APIRouter(tags=["keys"])


class KeyInfo(Schema):
    """A key as listed: never the key itself."""

    id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None


class KeyCreated(KeyInfo):
    """A new key; `key` is shown this once."""

    key: str


@router.post("/v1/users/{user_id}/keys", status_code=201, response_model=KeyCreated)
def create_key(ctx: CtxDep, who: PrincipalDep, user_id: UserId) -> KeyCreated:
    """Make a key for the user (admin only). Store it: it is not shown again."""
    require_admin(who)
    row, key = keys.create(ctx, user_id=user_id)
    return KeyCreated(id=row.id, prefix=row.prefix, created_at=row.created_at, key=key)


@router.get("/v1/users/{user_id}/keys", response_model=ListOf[KeyInfo])
def list_keys(ctx: CtxDep, who: PrincipalDep, user_id: UserId, limit: Limit = 50,
              cursor: Cursor = None) -> ListOf[KeyInfo]:
    """The user's keys: ids, prefixes and dates (admin only)."""
    require_admin(who)
    page = keys.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(KeyInfo, page)


@router.delete("/v1/users/{user_id}/keys/{key_id}", status_code=204, response_class=Response)
def delete_key(ctx: CtxDep, who: PrincipalDep, user_id: UserId, key_id: str) -> Response:
    """Revoke a key; it stops working at once (admin only)."""
    require_admin(who)
    keys.delete(ctx, user_id=user_id, key_id=key_id)
    return Response(status_code=204)
