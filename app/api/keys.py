"""Per-user API keys; admin only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response

from app.api.auth import AdminDep
from app.api.deps import CtxDep, Cursor, Limit, UserId, listed
from app.schemas import examples
from app.schemas.common import ListOf, Schema
from app.schemas.examples import example
from app.services import keys

router = APIRouter(tags=["keys"])


class KeyInfo(Schema):
    """A key as listed: never the key itself."""

    model_config = example(examples.KEY_INFO)

    id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None


class KeyCreated(KeyInfo):
    """A new key; `key` is shown this once."""

    model_config = example(examples.KEY_CREATED)

    key: str


@router.post("/v1/users/{user_id}/keys", status_code=201, response_model=KeyCreated,
             summary="Make a key for a user",
             description="A new key for the user (admin only). `key` is shown this once; "
             "only its sha256 is stored. It reaches that user's sessions, checkpoints, "
             "datasets and jobs, and reads models.")
def create_key(ctx: CtxDep, who: AdminDep, user_id: UserId) -> KeyCreated:
    """Make a key for the user (admin only). Store it: it is not shown again."""
    row, key = keys.create(ctx, user_id=user_id)
    return KeyCreated(id=row.id, prefix=row.prefix, created_at=row.created_at, key=key)


@router.get("/v1/users/{user_id}/keys", response_model=ListOf[KeyInfo],
            summary="List a user's keys",
            description="The user's keys: ids, prefixes and dates, never the keys (admin "
            "only).")
def list_keys(ctx: CtxDep, who: AdminDep, user_id: UserId, limit: Limit = 50,
              cursor: Cursor = None) -> ListOf[KeyInfo]:
    """The user's keys: ids, prefixes and dates (admin only)."""
    page = keys.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(KeyInfo, page)


@router.delete("/v1/users/{user_id}/keys/{key_id}", status_code=204, response_class=Response,
               summary="Revoke a key",
               description="The key stops working at once (admin only).")
def delete_key(ctx: CtxDep, who: AdminDep, user_id: UserId, key_id: str) -> Response:
    """Revoke a key; it stops working at once (admin only)."""
    keys.delete(ctx, user_id=user_id, key_id=key_id)
    return Response(status_code=204)
