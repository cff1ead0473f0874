"""Sessions: create, list, read, delete, and the per-step train/infer/signature calls."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnSession, OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, listed
from app.api.openapi import INFER_BODY, TRAIN_BODY
from app.api.problems import json_response
from app.schemas.common import ListOf, TensorsOut, TrainOut
from app.schemas.resources import RestoreRequest, Session, SessionCreate
from app.services import charts, inference, sessions

router = APIRouter(tags=["sessions"])


@router.post("/v1/users/{user_id}/sessions", status_code=201, response_model=Session,
             summary="Start a session",
             description="Load the model into a live interpreter for the user, with the "
             "model's initial weights, or with the weights of one of the user's checkpoints "
             "of the same model (`checkpoint_id`).")
def create_session(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser,
                   body: SessionCreate) -> Session:
    """Start a live interpreter for the user, from the model's weights or a checkpoint."""
    view = sessions.create(ctx, user_id=user_id, model_id=body.model_id,
                           checkpoint_id=body.checkpoint_id)
    return Session.model_validate(view)


@router.get("/v1/users/{user_id}/sessions", response_model=ListOf[Session],
            summary="List a user's sessions",
            description="The user's sessions, newest first, a page at a time.")
def list_sessions(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
                  cursor: Cursor = None) -> ListOf[Session]:
    """The user's sessions, newest first."""
    page = sessions.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Session, page)


@router.get("/v1/sessions/{session_id}", response_model=Session, summary="Get a session",
            description="A session with its step count, its last loss and the checkpoint "
            "that holds its weights as of its last save or restore.")
def get_session(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Session:
    """A session with its step count and last loss."""
    view = sessions.get(ctx, session_id=session_id)
    check_owner(who, view.user_id, "session", session_id)
    return Session.model_validate(view)


@router.delete("/v1/sessions/{session_id}", status_code=204, response_class=Response,
               summary="Delete a session",
               description="Drop the session and its interpreter; its checkpoints stay.")
def delete_session(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """Delete a session; its checkpoints stay."""
    row = sessions.get_row(ctx, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    sessions.delete(ctx, session_id=session_id)
    return Response(status_code=204)


@router.post("/v1/sessions/{session_id}/train", response_model=TrainOut,
             openapi_extra=TRAIN_BODY, summary="Train one step",
             description="Run the model's `train` signature once on a batch and answer its "
             "outputs (the loss) and the session's step count. Inputs are checked against the "
             "signature first: a wrong name, shape or dtype answers 422 naming the tensor. "
             "Calls on one session apply one at a time, in arrival order.")
async def train(ctx: CtxDep, who: PrincipalDep, session_id: str, request: Request) -> Response:
    """One train step; calls on one session apply one at a time in arrival order."""
    return json_response(await inference.train_json(ctx, who, session_id,
                                                    await request.body()))


@router.post("/v1/sessions/{session_id}/infer", response_model=TensorsOut,
             openapi_extra=INFER_BODY, summary="Run inference",
             description="Run the model's `infer` signature on the session's current "
             "weights: the outputs for a batch of inputs.")
async def infer(ctx: CtxDep, who: PrincipalDep, session_id: str, request: Request) -> Response:
    """Run the infer signature on the session's current weights."""
    return json_response(await inference.call_json(ctx, who, session_id, "infer",
                                                   await request.body()))


@router.post("/v1/sessions/{session_id}/signatures/{signature}", response_model=TensorsOut,
             openapi_extra=INFER_BODY, summary="Run another signature",
             description="Run any other tensor-in, tensor-out signature of the model by name. "
             "`train` has its own route; `save` and `restore` take file paths and are reached "
             "through checkpoints and restore.")
async def call_signature(ctx: CtxDep, who: PrincipalDep, session_id: str, signature: str,
                         request: Request) -> Response:
    """Run any other tensor-in/tensor-out signature of the model."""
    return json_response(await inference.call_json(ctx, who, session_id, signature,
                                                   await request.body()))


@router.post("/v1/sessions/{session_id}/restore", response_model=Session,
             summary="Restore a checkpoint",
             description="Run the model's `restore` signature with one of the user's "
             "checkpoints of the same model: the session goes on from those weights.")
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
            responses={200: {"description": "An SVG image",
                             "content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
            summary="Chart a session's losses",
            description="The session's recent train losses (up to 1,000 steps since it was "
            "loaded) as an SVG line chart.")
def session_loss_chart(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """The session's recent train losses (up to 1000, since it was loaded) as an SVG chart."""
    row = sessions.get_row(ctx, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    first, values = sessions.loss_history(ctx, session_id=session_id)
    svg = charts.loss_chart(values, steps=range(first, first + len(values)),
                            title=f"session {session_id}: recent train losses", xlabel="step")
    return Response(svg, media_type="image/svg+xml")
