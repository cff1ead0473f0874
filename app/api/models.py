"""Base models: upload, list, read, download, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, require_admin
from app.api.deps import CtxDep, Cursor, Limit, listed
from app.errors import PayloadTooLarge
from app.metrics import MODEL_UPLOADS
from app.schemas.common import ListOf
from app.schemas.resources import Model
from app.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=201, response_model=Model,
             responses={413: {"description": "Over the size limit"},
                        422: {"description": "Not a trainable TFLite model"}})
async def upload_model(
    ctx: CtxDep, who: PrincipalDep,
    file: Annotated[UploadFile, File(description="The .tflite file")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
) -> Model:
    """Upload a base .tflite model; it is smoke-run in a child process before it is accepted."""
    require_admin(who)
    limit = ctx.settings.max_model_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"model file is over the limit of {limit} bytes")
    try:
        row = await run_in_threadpool(models.create, ctx, name=name, data=data)
    except Exception:
        MODEL_UPLOADS.labels("rejected").inc()
        raise
    MODEL_UPLOADS.labels("accepted").inc()
    return Model.model_validate(row)


@router.get("", response_model=ListOf[Model])
def list_models(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> ListOf[Model]:
    """Every base model, newest first."""
    page = models.get_all(ctx, limit=limit, cursor=cursor)
    return listed(Model, page)


@router.get("/{model_id}", response_model=Model)
def get_model(ctx: CtxDep, model_id: str) -> Model:
    """One model with its signatures."""
    return Model.model_validate(models.get(ctx, model_id=model_id))


@router.get("/{model_id}/file", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_model(ctx: CtxDep, model_id: str) -> Response:
    """The exact bytes uploaded."""
    row = models.get(ctx, model_id=model_id)
    return Response(models.read_file(ctx, model_id=model_id),
                    media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{model_id}.tflite"',
                             "ETag": f'"{row.sha256}"'})


@router.delete("/{model_id}", status_code=204, response_class=Response)
def delete_model(ctx: CtxDep, who: PrincipalDep, model_id: str) -> Response:
    """Delete a model; 409 while sessions use it (admin only)."""
    require_admin(who)
    models.delete(ctx, model_id=model_id)
    return Response(status_code=204)
