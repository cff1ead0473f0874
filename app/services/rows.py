"""What every resource does with its rows: read one or 404, and store a blob with its row
(blob first, row second; the blob goes again if the row cannot be written)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from app.db.tables import Base
from app.errors import NotFound
from app.services.context import Context

R = TypeVar("R", bound=Base)


def get(ctx: Context, table: type[R], row_id: str, kind: str) -> R:
    """The row with this id, or 404 naming the kind of object."""
    with ctx.db.begin() as db:
        return get_in(db, table, row_id, kind)


def get_in(db: Session, table: type[R], row_id: str, kind: str) -> R:
    """The same, inside a transaction the caller holds."""
    row = db.get(table, row_id)
    if row is None:
        raise NotFound(f"{kind} '{row_id}' not found")
    return row


def add_with_blob(ctx: Context, key: str, data: bytes, row: R) -> R:
    """Store the blob, then commit its row; on failure no blob is left behind."""
    ctx.store.put(key, data)
    try:
        with ctx.db.begin() as db:
            db.add(row)
    except BaseException:
        ctx.store.delete(key)
        raise
    return row
