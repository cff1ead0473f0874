"""Sessions: create, list, read, delete, and the per-step train/infer/signature calls."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, check_owner, check_user
from app.api.deps import (
    TENSOR_BODY,
    Cursor,
    FleetDep,
    Limit,
    UserId,
    listed,
    live_session,
    on_session,
    read_json,
)
from app.api.problems import json_response
from app.errors import InvalidInput, NotFound
from app.metrics import SIGNATURE_CALLS, TRAIN_STEPS
from app.runtime.signatures import CHECKPOINT_SIGNATURES
from app.schemas.common import ListOf, TensorsOut, TrainOut
from app.schemas.resources import RestoreRequest, Session, SessionCreate
from app.services import charts, sessions
from app.services.keyring import Principal

router = APIRouter(tags=["sessions"])


@router.post("/v1/users/{user_id}/sessions", status_code=201, response_model=Session)
def create_session(fleet: FleetDep, who: PrincipalDep, user_id: UserId,
                   body: SessionCreate) -> Session:
    """Start a live interpreter for the user, from the model's weights or a checkpoint."""
    check_user(who, user_id)
    view = sessions.create(fleet, user_id=user_id, model_id=body.model_id,
                           checkpoint_id=body.checkpoint_id)
    return Session.model_validate(view)


@router.get("/v1/users/{user_id}/sessions", response_model=ListOf[Session])
def list_sessions(fleet: FleetDep, who: PrincipalDep, user_id: UserId, limit: Limit = 50,
                  cursor: Cursor = None) -> ListOf[Session]:
    """The user's sessions, newest first."""
    check_user(who, user_id)
    page = sessions.get_all(fleet, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Session, page)


@router.get("/v1/sessions/{session_id}", response_model=Session)
def get_session(fleet: FleetDep, who: PrincipalDep, session_id: str) -> Session:
    """A session with its step count and last loss."""
    view = sessions.get(fleet, session_id=session_id)
    check_owner(who, view.user_id, "session", session_id)
    return Session.model_validate(view)


@router.delete("/v1/sessions/{session_id}", status_code=204, response_class=Response)
def delete_session(fleet: FleetDep, who: PrincipalDep, session_id: str) -> Response:
    """Delete a session; its checkpoints stay."""
    row = sessions.get_row(fleet, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    sessions.delete(fleet, session_id=session_id)
    return Response(status_code=204)


@router.post("/v1/sessions/{session_id}/train", response_model=TrainOut,
             openapi_extra=TENSOR_BODY)
async def train(fleet: FleetDep, who: PrincipalDep, session_id: str,
                request: Request) -> Response:
    """One train step; calls on one session apply one at a time in arrival order."""
    body = await read_json(request)
    outputs, step = await on_session(fleet, who, session_id, lambda s: partial(s.train, body))
    TRAIN_STEPS.inc()
    return json_response({"outputs": outputs, "step": step})


@router.post("/v1/sessions/{session_id}/infer", response_model=TensorsOut,
             openapi_extra=TENSOR_BODY)
async def infer(fleet: FleetDep, who: PrincipalDep, session_id: str,
                request: Request) -> Response:
    """Run the infer signature on the session's current weights."""
    return await _call(fleet, who, session_id, "infer", request)


@router.post("/v1/sessions/{session_id}/signatures/{signature}", response_model=TensorsOut,
             openapi_extra=TENSOR_BODY)
async def call_signature(fleet: FleetDep, who: PrincipalDep, session_id: str, signature: str,
                         request: Request) -> Response:
    """Run any other tensor-in/tensor-out signature of the model."""
    if signature == "train":
        raise InvalidInput("use POST /v1/sessions/{id}/train for the train signature")
    if signature in CHECKPOINT_SIGNATURES:
        raise InvalidInput(f"'{signature}' takes a file path; use the checkpoints and restore "
                           "endpoints instead")
    return await _call(fleet, who, session_id, signature, request)


async def _call(fleet: FleetDep, who: Principal, session_id: str, signature: str,
                request: Request) -> Response:
    body = await read_json(request)
    live = await live_session(fleet, who, session_id)
    if signature not in live.signatures:
        raise NotFound(f"model '{live.model_id}' has no signature '{signature}' "
                       f"(it has {', '.join(sorted(live.signatures))})")
    outputs = await on_session(fleet, who, session_id,
                               lambda s: partial(s.call, signature, body))
    SIGNATURE_CALLS.labels(signature).inc()
    return json_response({"outputs": outputs})


@router.post("/v1/sessions/{session_id}/restore", response_model=Session)
async def restore_session(fleet: FleetDep, who: PrincipalDep, session_id: str,
                          body: Annotated[RestoreRequest, Body()]) -> Session:
    """Load one of the user's checkpoints of the same model into the session."""
    await on_session(
        fleet, who, session_id,
        lambda s: partial(sessions.restore, fleet, s, checkpoint_id=body.checkpoint_id),
        inline=False)
    view = await run_in_threadpool(sessions.get, fleet, session_id=session_id)
    return Session.model_validate(view)


@router.get("/v1/sessions/{session_id}/loss.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def session_loss_chart(fleet: FleetDep, who: PrincipalDep, session_id: str) -> Response:
    """The session's recent train losses (up to 1000, since it was loaded) as an SVG chart."""
    row = sessions.get_row(fleet, session_id=session_id)
    check_owner(who, row.user_id, "session", session_id)
    live = fleet.pool.get(session_id)
    values = list(live.recent_losses) if live else []
    svg = charts.line_chart(values, title=f"session {session_id}: recent train losses",
                            xlabel="step (most recent 1000)")
    return Response(svg, media_type="image/svg+xml")
