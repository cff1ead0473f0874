"""Keyset pagination, newest first: ids sort by creation time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.schemas.common import control_character

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of rows and the cursor for the next one."""

    items: list[T]
    next_cursor: str | None


def paginate(db: Session, query: Select[Any], id_column: Any, *, limit: int,
             cursor: str | None) -> Page[Any]:
    """Rows of query ordered by id descending, after cursor (422 for one no page gave)."""
    if cursor and (found := control_character(cursor)):
        # A cursor is an id: it never holds one, and PostgreSQL cannot compare against a NUL.
        raise InvalidInput(f"cursor: no page gives a cursor holding the control character "
                           f"{found}")
    if cursor:
        query = query.where(id_column < cursor)
    rows = list(db.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)
