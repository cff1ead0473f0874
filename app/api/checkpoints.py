"""Checkpoints: save from a session, list per user, read, download, delete."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Response

from app.api.auth import OwnSession, OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, ModelFilter, SessionFilter, listed
from app.metrics import CHECKPOINTS
from app.schemas.common import ListOf
from app.schemas.resources import Checkpoint, CheckpointCreate
from app.services import checkpoints, inference
from app.services.keyring import Principal

router = APIRouter(tags=["checkpoints"])


@router.post("/v1/sessions/{session_id}/checkpoints", status_code=201,
             response_model=Checkpoint, summary="Save a checkpoint",
             description="Run the model's `save` signature and keep the file it writes under "
             "the user's key prefix in the store (`kind: \"manual\"`). The body and its "
             "label are optional.")
async def create_checkpoint(
    ctx: CtxDep, who: PrincipalDep, session_id: OwnSession,
    body: Annotated[CheckpointCreate | None, Body()] = None,
) -> Checkpoint:
    """Run the save signature and keep the file under the user's key prefix."""
    label = body.label if body else None
    row = await inference.on_session(
        ctx, who, session_id,
        lambda s: partial(checkpoints.save, ctx, s, kind="manual", label=label), inline=False)
    CHECKPOINTS.labels("manual").inc()
    return Checkpoint.model_validate(row)


@router.get("/v1/users/{user_id}/checkpoints", response_model=ListOf[Checkpoint],
            summary="List a user's checkpoints",
            description="The user's checkpoints, newest first: manual saves, autosaves and "
            "each job epoch's, optionally of one model or one session.")
def list_checkpoints(
    ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
    cursor: Cursor = None,
    model_id: ModelFilter = None, session_id: SessionFilter = None,
) -> ListOf[Checkpoint]:
    """The user's checkpoints, newest first."""
    page = checkpoints.get_all(ctx, user_id=user_id, model_id=model_id,
                               session_id=session_id, limit=limit, cursor=cursor)
    return listed(Checkpoint, page)


@router.get("/v1/checkpoints/{checkpoint_id}", response_model=Checkpoint,
            summary="Get a checkpoint",
            description="A checkpoint: its session, step, loss, kind, size and sha256.")
def get_checkpoint(ctx: CtxDep, who: PrincipalDep, checkpoint_id: str) -> Checkpoint:
    """One checkpoint."""
    return Checkpoint.model_validate(_owned(ctx, who, checkpoint_id))


def _owned(ctx: CtxDep, who: Principal, checkpoint_id: str) -> checkpoints.CheckpointRow:
    row = checkpoints.get(ctx, checkpoint_id=checkpoint_id)
    check_owner(who, row.user_id, "checkpoint", checkpoint_id)
    return row


@router.get("/v1/checkpoints/{checkpoint_id}/file", response_class=Response,
            responses={200: {"description": "The checkpoint file", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}},
            summary="Download a checkpoint file",
            description="The exact file `save` wrote; the model's `restore` signature loads "
            "it in any TFLite interpreter. `ETag` is its sha256.")
def download_checkpoint(ctx: CtxDep, who: PrincipalDep, checkpoint_id: str) -> Response:
    """The checkpoint file, restorable by the model's restore signature in any interpreter."""
    row = _owned(ctx, who, checkpoint_id)
    return Response(checkpoints.read_file(ctx, row=row), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{row.id}.ckpt"',
                             "ETag": f'"{row.sha256}"'})


@router.delete("/v1/checkpoints/{checkpoint_id}", status_code=204, response_class=Response,
               summary="Delete a checkpoint",
               description="Delete the checkpoint and its file; 409 while it holds a "
               "session's current weights.")
def delete_checkpoint(ctx: CtxDep, who: PrincipalDep, checkpoint_id: str) -> Response:
    """Delete a checkpoint (409 while it holds a session's current weights)."""
    _owned(ctx, who, checkpoint_id)
    checkpoints.delete(ctx, checkpoint_id=checkpoint_id)
    return Response(status_code=204)
