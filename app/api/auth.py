"""Bearer authentication for the routes, and the ownership rule: another user's object is a
404. The check itself is app.services.inference.authenticate, shared with the fast lane."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.api.deps import CtxDep, UserId, get_ctx
from app.errors import Forbidden, NotFound
from app.services import inference, sessions, ui_sessions
from app.services.keyring import Principal

bearer = HTTPBearer(auto_error=False, scheme_name="key",
                    description="The admin token or a user's key (when FLEETLITE_ADMIN_TOKEN "
                                "is set)")


async def principal(request: Request, _: Annotated[object, Depends(bearer)]) -> Principal:
    """Who is calling; 401 unless the token stands for someone. Without a bearer header, the
    pages' session cookie counts on the GET routes they read (app.services.ui_sessions)."""
    ctx = get_ctx(request)
    authorization = request.headers.get("authorization")
    cookie = request.cookies.get(ui_sessions.COOKIE)
    if (authorization is None and cookie and ctx.settings.admin_token is not None
            and ui_sessions.reaches(request.method, request.url.path)):
        found = await run_in_threadpool(ui_sessions.principal, ctx, cookie)
        if found is not None:
            return found
    try:
        return inference.authenticate(ctx, authorization, may_block=False)
    except inference.NeedsLookup:  # a key's first use in this process: a database read
        return await run_in_threadpool(
            partial(inference.authenticate, ctx, authorization, may_block=True))


PrincipalDep = Annotated[Principal, Depends(principal)]


def require_admin(who: Principal) -> None:
    """403 unless the caller is the admin."""
    if not who.admin:
        raise Forbidden("only the admin token may do this")


def admin(who: PrincipalDep) -> Principal:
    """The caller, if the admin; 403 before any body is read otherwise."""
    require_admin(who)
    return who


AdminDep = Annotated[Principal, Depends(admin)]


def check_user(who: Principal, user_id: str) -> None:
    """404 for another user's path, as if the user did not exist."""
    if not who.may_see(user_id):
        raise NotFound(f"user '{user_id}' not found")


def check_owner(who: Principal, owner: str, kind: str, object_id: str) -> None:
    """404 for another user's object, exactly as for an id that does not exist."""
    if not who.may_see(owner):
        raise NotFound(f"{kind} '{object_id}' not found")


def own_user(who: PrincipalDep, user_id: UserId) -> str:
    """The path's user, if the caller may see them; checked before any body is read, so
    another user's path is a 404 whatever the body holds."""
    check_user(who, user_id)
    return user_id


def own_session(ctx: CtxDep, who: PrincipalDep, session_id: str) -> str:
    """The path's session, if it is the caller's (404 for anyone else's, before the body)."""
    live = ctx.pool.get(session_id)
    owner = live.user_id if live else sessions.get_row(ctx, session_id=session_id).user_id
    check_owner(who, owner, "session", session_id)
    return session_id


OwnUser = Annotated[str, Depends(own_user)]
OwnSession = Annotated[str, Depends(own_session)]
