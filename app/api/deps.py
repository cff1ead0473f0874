"""Dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Form, Path, Query, Request
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.problems import error_response
from app.errors import NotFound
from app.schemas.common import TEXT_PATTERN, USER_ID_PATTERN, ListOf, control_character
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
# Text that reaches a database declares TEXT_PATTERN: PostgreSQL refuses NUL where SQLite
# stores it, so without it the two backends answered differently (a 500 on PostgreSQL).
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page",
                                     pattern=TEXT_PATTERN)]
ModelFilter = Annotated[str | None, Query(description="Only this model's",
                                          pattern=TEXT_PATTERN)]
SessionFilter = Annotated[str | None, Query(description="Only this session's",
                                            pattern=TEXT_PATTERN)]
Name = Annotated[str, Form(min_length=1, max_length=200, pattern=TEXT_PATTERN,
                           description="A name of your choosing, without control characters",
                           examples=["digits"])]


class PlainPaths:
    """404 for a path holding a control character, before any route reads an id from it: no
    id, user or route holds one, and PostgreSQL cannot even be asked about a NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = control_character(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        exc = NotFound(f"nothing here: the path holds the control character {found}")
        await error_response(exc, scope["method"], scope["path"])(scope, receive, send)


def listed(schema: type[S], page: Page[Any]) -> ListOf[S]:
    """A page of rows or views as the API's list body."""
    return ListOf[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(item) for item in page.items], next_cursor=page.next_cursor)
