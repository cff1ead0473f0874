"""Base models: upload, list, read, download, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.auth import AdminDep
from app.api.deps import CtxDep, Cursor, Limit, Name, listed
from app.errors import PayloadTooLarge
from app.metrics import MODEL_UPLOADS
from app.schemas.common import ListOf
from app.schemas.resources import Model
from app.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])


def upload_responses(unprocessable: str) -> dict[int | str, dict[str, Any]]:
    """What an upload answers besides its 201: conversions answer the same."""
    return {200: {"model": Model, "description": "The same file under the same name: the "
                  "model already there"},
            201: {"description": "A new model"},
            413: {"description": "Over the size limit"},
            422: {"description": unprocessable}}


@router.post("", status_code=201, response_model=Model, summary="Upload a base model",
             description="Upload a trainable `.tflite` model with the `train`, `infer`, "
             "`save` and `restore` signatures. A child process smoke-runs every signature "
             "before it is accepted; the answer lists them, with -1 for open dimensions. The "
             "same file under the same name answers 200 with the model already there; a "
             "different name or different bytes make a new model. Admin only when keys are "
             "on.",
             responses=upload_responses("Not a trainable TFLite model (the reason is in "
                                        "`detail`)"))
async def upload_model(
    ctx: CtxDep, who: AdminDep,
    file: Annotated[UploadFile, File(description="The .tflite file")],
    name: Name,
    response: Response,
) -> Model:
    """Upload a base .tflite model; it is smoke-run in a child process before it is accepted."""
    limit = ctx.settings.max_model_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"model file is over the limit of {limit} bytes")
    try:
        row, created = await run_in_threadpool(models.upload, ctx, name=name, data=data)
    except Exception:
        MODEL_UPLOADS.labels("rejected").inc()
        raise
    MODEL_UPLOADS.labels("accepted" if created else "existing").inc()
    if not created:
        response.status_code = 200
    return Model.model_validate(row)


@router.get("", response_model=ListOf[Model], summary="List base models",
            description="Every base model, newest first, a page at a time.")
def list_models(ctx: CtxDep, limit: Limit = 50, cursor: Cursor = None) -> ListOf[Model]:
    """Every base model, newest first."""
    page = models.get_all(ctx, limit=limit, cursor=cursor)
    return listed(Model, page)


@router.get("/{model_id}", response_model=Model, summary="Get a base model",
            description="A model with its signatures: each input and output with its shape "
            "(-1 for a dimension the model leaves open) and dtype. Tensors sent to a session "
            "must fit them.")
def get_model(ctx: CtxDep, model_id: str) -> Model:
    """One model with its signatures."""
    return Model.model_validate(models.get(ctx, model_id=model_id))


@router.get("/{model_id}/file", response_class=Response,
            responses={200: {"description": "The .tflite file", "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}},
            summary="Download a base model",
            description="The exact bytes uploaded; `ETag` is their sha256.")
def download_model(ctx: CtxDep, model_id: str) -> Response:
    """The exact bytes uploaded."""
    row = models.get(ctx, model_id=model_id)
    return Response(models.read_file(ctx, model_id=model_id),
                    media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{model_id}.tflite"',
                             "ETag": f'"{row.sha256}"'})


@router.delete("/{model_id}", status_code=204, response_class=Response,
               summary="Delete a base model",
               description="Delete a model no session uses (409 while one does); checkpoints "
               "made from it stay downloadable. Admin only when keys are on.")
def delete_model(ctx: CtxDep, who: AdminDep, model_id: str) -> Response:
    """Delete a model; 409 while sessions use it (admin only)."""
    models.delete(ctx, model_id=model_id)
    return Response(status_code=204)
