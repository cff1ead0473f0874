"""Sessions: create, list, read, delete, and the per-step train/infer/signature calls."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnSession, OwnUser, PrincipalDep, check_owner
from app.api.deps import (
    TENSOR_BODY,
    CtxDep,
    Cursor,
    Limit,
    listed,
)
from app.api.problems import json_response
from app.schemas.common import ListOf, TensorsOut, TrainOut
from app.schemas.resources import RestoreRequest, Session, SessionCreate
from app.services import charts, inference, sessions

router = APIRouter(tags=["sessions"])


@router.post("/v1/users/{user_id}/sessions", status_code=201, response_model=Session)
def create_session(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser,
                   body: SessionCreate) -> Session:
    """Start a live interpreter for the user, from the model's weights or a checkpoint."""
    view = sessions.create(ctx, user_id=user_id, model_id=body.model_id,
                           checkpoint_id=body.checkpoint_id)
    return Session.model_validate(view)


@router.get("/v1/users/{user_id}/sessions", response_model=ListOf[Session])
def list_sessions(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
                  cursor: Cursor = None) -> ListOf[Session]:
    """The user's sessions, newest first."""
    page = sessions.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Session, page)


@router.get("/v1/sessions/{session_id}", response_model=Session)
def get_session(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Session:
    """A session with its step count and last loss."""
    view = sessions.get(ctx, session_id=session_id)
    check_owner(who, view.user_id, "session", session_id)
    return Session.model_validate(view)


@router.delete("/v1/sessions/{session_id}", status_code=204, response_class=Response)
def delete_session(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """Delete a session; its checkpoints stay."""
    row = sessions.get_row(ctx, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    sessions.delete(ctx, session_id=session_id)
    return Response(status_code=204)


@router.post("/v1/sessions/{session_id}/train", response_model=TrainOut,
             openapi_extra=TENSOR_BODY)
async def train(ctx: CtxDep, who: PrincipalDep, session_id: str, request: Request) -> Response:
    """One train step; calls on one session apply one at a time in arrival order."""
    return json_response(await inference.train_json(ctx, who, session_id,
                                                    await request.body()))


@router.post("/v1/sessions/{session_id}/infer", response_model=TensorsOut,
             openapi_extra=TENSOR_BODY)
async def infer(ctx: CtxDep, who: PrincipalDep, session_id: str, request: Request) -> Response:
    """Run the infer signature on the session's current weights."""
    return json_response(await inference.call_json(ctx, who, session_id, "infer",
                                                   await request.body()))


@router.post("/v1/sessions/{session_id}/signatures/{signature}", response_model=TensorsOut,
             openapi_extra=TENSOR_BODY)
async def call_signature(ctx: CtxDep, who: PrincipalDep, session_id: str, signature: str,
                         request: Request) -> Response:
    """Run any other tensor-in/tensor-out signature of the model."""
    return json_response(await inference.call_json(ctx, who, session_id, signature,
                                                   await request.body()))


@router.post("/v1/sessions/{session_id}/restore", response_model=Session)
async def restore_session(ctx: CtxDep, who: PrincipalDep, session_id: OwnSession,
                          body: Annotated[RestoreRequest, Body()]) -> Session:
    """Load one of the user's checkpoints of the same model into the session."""
    await inference.on_session(
        ctx, who, session_id,
        lambda s: partial(sessions.restore, ctx, s, checkpoint_id=body.checkpoint_id),
        inline=False)
    view = await run_in_threadpool(sessions.get, ctx, session_id=session_id)
    return Session.model_validate(view)


@router.get("/v1/sessions/{session_id}/loss.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def session_loss_chart(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """The session's recent train losses (up to 1000, since it was loaded) as an SVG chart."""
    row = sessions.get_row(ctx, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    first, values = sessions.loss_history(ctx, session_id=session_id)
    svg = charts.loss_chart(values, steps=range(first, first + len(values)),
                            title=f"session {session_id}: recent train losses", xlabel="step")
    return Response(svg, media_type="image/svg+xml")
