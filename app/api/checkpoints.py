"""Checkpoints: save from a session, list per user, read, download, delete."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from app.api.auth import PrincipalDep, check_owner, check_user
from app.api.deps import Cursor, FleetDep, Limit, UserId, listed, on_session
from app.db.tables import CheckpointRow
from app.metrics import CHECKPOINTS
from app.schemas.common import ListOf
from app.schemas.resources import Checkpoint, CheckpointCreate
from app.services import checkpoints
from app.services.keyring import Principal

router = APIRouter(tags=["checkpoints"])


@router.post("/v1/sessions/{session_id}/checkpoints", status_code=201,
             response_model=Checkpoint)
async def create_checkpoint(
    fleet: FleetDep, who: PrincipalDep, session_id: str,
    body: Annotated[CheckpointCreate | None, Body()] = None,
) -> Checkpoint:
    """Run the save signature and keep the file under the user's key prefix."""
    label = body.label if body else None
    row = await on_session(
        fleet, who, session_id,
        lambda s: partial(checkpoints.save, fleet, s, kind="manual", label=label), inline=False)
    CHECKPOINTS.labels("manual").inc()
    return Checkpoint.model_validate(row)


@router.get("/v1/users/{user_id}/checkpoints", response_model=ListOf[Checkpoint])
def list_checkpoints(
    fleet: FleetDep, who: PrincipalDep, user_id: UserId, limit: Limit = 50,
    cursor: Cursor = None,
    model_id: Annotated[str | None, Query()] = None,
    session_id: Annotated[str | None, Query()] = None,
) -> ListOf[Checkpoint]:
    """The user's checkpoints, newest first."""
    check_user(who, user_id)
    page = checkpoints.get_all(fleet, user_id=user_id, model_id=model_id,
                               session_id=session_id, limit=limit, cursor=cursor)
    return listed(Checkpoint, page)


@router.get("/v1/checkpoints/{checkpoint_id}", response_model=Checkpoint)
def get_checkpoint(fleet: FleetDep, who: PrincipalDep, checkpoint_id: str) -> Checkpoint:
    """One checkpoint."""
    return Checkpoint.model_validate(_owned(fleet, who, checkpoint_id))


def _owned(fleet: FleetDep, who: Principal, checkpoint_id: str) -> CheckpointRow:
    row = checkpoints.get(fleet, checkpoint_id=checkpoint_id)
    check_owner(who, row.user_id, "checkpoint", checkpoint_id)
    return row


@router.get("/v1/checkpoints/{checkpoint_id}/file", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_checkpoint(fleet: FleetDep, who: PrincipalDep, checkpoint_id: str) -> Response:
    """The checkpoint file, restorable by the model's restore signature in any interpreter."""
    row = _owned(fleet, who, checkpoint_id)
    return Response(checkpoints.read_file(fleet, row=row), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{row.id}.ckpt"',
                             "ETag": f'"{row.sha256}"'})


@router.delete("/v1/checkpoints/{checkpoint_id}", status_code=204, response_class=Response)
def delete_checkpoint(fleet: FleetDep, who: PrincipalDep, checkpoint_id: str) -> Response:
    """Delete a checkpoint (409 while it holds a session's current weights)."""
    _owned(fleet, who, checkpoint_id)
    checkpoints.delete(fleet, checkpoint_id=checkpoint_id)
    return Response(status_code=204)
