"""The dashboard in a browser (/ui): pages and their assets, and the sign-in that exchanges a
key for a session cookie (HttpOnly, SameSite=Strict) when keys are on. Not in the OpenAPI
document: these are pages, not API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import CtxDep
from app.errors import InvalidInput, Unauthorized
from app.services import inference, ui_pages, ui_sessions
from app.services.keyring import Principal

router = APIRouter(include_in_schema=False)
HTML = "text/html; charset=utf-8"


async def _who(ctx: CtxDep, request: Request) -> Principal | None:
    """The session cookie's principal, else a bearer header's, else None (sign in)."""
    cookie = request.cookies.get(ui_sessions.COOKIE)
    if ctx.settings.admin_token is not None and cookie:
        found = await run_in_threadpool(ui_sessions.principal, ctx, cookie)
        if found is not None:
            return found
    try:
        return await run_in_threadpool(inference.authenticate, ctx,
                                       request.headers.get("authorization"), may_block=True)
    except Unauthorized:
        return None


def _keys_on(request: Request) -> bool:
    return request.app.state.ctx.settings.admin_token is not None


def _sign_in(request: Request) -> HTMLResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTMLResponse(ui_pages.sign_in_page(target), status_code=401, media_type=HTML,
                        headers={"Cache-Control": "no-store"})


def _page(html: str) -> HTMLResponse:
    return HTMLResponse(html, media_type=HTML, headers={"Cache-Control": "no-store"})


@router.get("/ui")
async def dashboard(ctx: CtxDep, request: Request, cursor: str | None = None) -> Response:
    """The fleets list, or the sign-in form."""
    who = await _who(ctx, request)
    if who is None:
        return _sign_in(request)
    return _page(await run_in_threadpool(lambda: ui_pages.dashboard(
        ctx, who, keys_on=_keys_on(request), cursor=cursor)))


@router.get("/ui/fleets/{fleet_id}")
async def fleet_page(ctx: CtxDep, request: Request, fleet_id: str,
                     devices_from: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    """One fleet, live while it runs."""
    who = await _who(ctx, request)
    if who is None:
        return _sign_in(request)
    return _page(await run_in_threadpool(lambda: ui_pages.fleet_page(
        ctx, who, fleet_id=fleet_id, keys_on=_keys_on(request), devices_from=devices_from)))


@router.get("/ui/fleets/{fleet_id}/live")
async def fleet_live(ctx: CtxDep, request: Request, fleet_id: str,
                     devices_from: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
    """The part of a fleet's page each finished round redraws."""
    who = await _who(ctx, request)
    if who is None:
        raise Unauthorized("sign in at /ui first")
    return _page(await run_in_threadpool(lambda: ui_pages.live(
        ctx, who, fleet_id=fleet_id, devices_from=devices_from)))


@router.get("/ui/compare")
async def compare(ctx: CtxDep, request: Request,
                  ids: Annotated[list[str] | None, Query(max_length=16)] = None) -> Response:
    """Fleets side by side, by name: `ids` repeated or comma-separated, 2 to 16."""
    who = await _who(ctx, request)
    if who is None:
        return _sign_in(request)
    wanted = [i.strip() for value in ids or [] for i in value.split(",") if i.strip()]
    if not 2 <= len(wanted) <= 16:
        raise InvalidInput("ids: pick 2 to 16 fleets to compare")
    return _page(await run_in_threadpool(lambda: ui_pages.compare_page(
        ctx, who, ids=wanted, keys_on=_keys_on(request))))


@router.post("/ui/signin")
async def sign_in(ctx: CtxDep, request: Request, key: Annotated[str, Form(max_length=512)],
                  next: Annotated[str, Form(max_length=2048)] = "/ui") -> Response:
    """Exchange a key for a session cookie, then go on to the page asked for."""
    token = await run_in_threadpool(ui_sessions.sign_in, ctx, key)
    if token is None:
        return HTMLResponse(ui_pages.sign_in_page(next, "That key is not valid."),
                            status_code=401, media_type=HTML)
    response = RedirectResponse(ui_pages.safe_next(next), status_code=303)
    response.set_cookie(ui_sessions.COOKIE, token, max_age=ui_sessions.LIFETIME_S, path="/",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/ui/signout")
async def sign_out(ctx: CtxDep, request: Request) -> Response:
    """End the session (here and in the browser)."""
    cookie = request.cookies.get(ui_sessions.COOKIE)
    if cookie:
        ui_sessions.sign_out(ctx, cookie)
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(ui_sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/ui/static/{name}")
def static(name: str) -> Response:
    """The pages' own stylesheet and scripts."""
    body, media = ui_pages.asset(name)
    return Response(body, media_type=media, headers={"Cache-Control": "max-age=300"})
