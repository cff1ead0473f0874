"""Keyset pagination, newest first: ids sort by creation time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of rows and the cursor for the next one."""

    items: list[T]
    next_cursor: str | None


def paginate(db: Session, query: Select[Any], id_column: Any, *, limit: int,
             cursor: str | None) -> Page[Any]:
    """Rows of query ordered by id descending, after cursor."""
    if cursor:
        query = query.where(id_column < cursor)
    rows = list(db.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)
