"""Dependency aliases shared by the routers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.errors import InvalidInput, NotFound, ServiceUnavailable
from app.runtime.pool import LiveSession, SessionEvicted
from app.schemas.common import USER_ID_PATTERN, ListOf, TensorsIn
from app.services import sessions
from app.services.fleet import Fleet
from app.services.keyring import Principal
from app.services.pages import Page

T = TypeVar("T")


def get_fleet(request: Request) -> Fleet:
    """The Fleet built at start."""
    return request.app.state.fleet  # type: ignore[no-any-return]


FleetDep = Annotated[Fleet, Depends(get_fleet)]
UserId = Annotated[str, Path(pattern=USER_ID_PATTERN, description="Chosen by the client",
                             examples=["alice"])]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]

TENSOR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TensorsIn.model_json_schema()}},
    }
}


S = TypeVar("S", bound=BaseModel)


def listed(schema: type[S], page: Page[Any]) -> ListOf[S]:
    """A page of rows or views as the API's list body."""
    return ListOf[schema](  # type: ignore[valid-type]
        items=[schema.model_validate(item) for item in page.items], next_cursor=page.next_cursor)


async def read_json(request: Request) -> Any:
    """The request body parsed with orjson (several times faster than json for tensors)."""
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None


async def on_session(fleet: Fleet, who: Principal, session_id: str,
                     call: Callable[[LiveSession], Callable[[], T]], *,
                     inline: bool = True) -> T:
    """Run call(live)() in the session's strand, in arrival order, and return its result.

    Cheap calls on an idle session run right here (see SerialExecutor.run_or_submit);
    others, and anything doing I/O (inline=False), go to the interpreter threads. If the
    session was evicted before the call ran, it is loaded again (from the checkpoint the
    eviction wrote) and the call is retried.
    """
    inline_below = fleet.settings.inline_call_ms / 1000 if inline else 0.0
    for _ in range(5):
        live = await live_session(fleet, who, session_id)
        fut = live.strand.run_or_submit(call(live), inline_below=inline_below)
        try:
            return fut.result() if fut.done() else await asyncio.wrap_future(fut)
        except SessionEvicted:
            continue
    raise ServiceUnavailable(f"session '{session_id}' is being evicted and loaded repeatedly; "
                             "retry shortly")


async def live_session(fleet: Fleet, who: Principal, session_id: str) -> LiveSession:
    """The caller's live session (404 for anyone else's); loading runs off the event loop."""
    found = fleet.pool.get(session_id)
    if found is None:
        found = await run_in_threadpool(sessions.live, fleet, session_id=session_id)
    if not who.may_see(found.user_id):
        raise NotFound(f"session '{session_id}' not found")
    return found
