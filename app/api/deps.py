"""Dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel

from app.schemas.common import USER_ID_PATTERN, ListOf
from app.services.context import Context
from app.services.pages import Page

S = TypeVar("S", bound=BaseModel)


def get_ctx(request: Request) -> Context:
    """The Context built at start."""
    return request.app.state.ctx  # type: ignore[no-any-return]


CtxDep = Annotated[Context, Depends(get_ctx)]
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="Chosen by the client",
                             examples=["alice"])]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


def listed(schema: type[S], page: Page[Any]) -> ListOf[S]:
    """A page of rows or views as the API's list body."""
    return ListOf[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(item) for item in page.items], next_cursor=page.next_cursor)
