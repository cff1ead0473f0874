"""Bring your own model: a Keras file converted into a trainable .tflite."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.auth import AdminDep
from app.api.deps import CtxDep
from app.api.models import upload_responses
from app.errors import PayloadTooLarge
from app.schemas.convert import OPTIONS_DESCRIPTION, OPTIONS_EXAMPLE
from app.schemas.resources import Model
from app.services import convert as service

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("/convert", status_code=201, response_model=Model,
             summary="Convert a Keras model into a trainable model",
             responses=upload_responses("Not a Keras model, a Lambda layer or pickled code, an "
                                        "unsupported layer or an unknown option (named in "
                                        "`detail`)"))
async def convert_model(
    ctx: CtxDep, who: AdminDep,
    file: Annotated[UploadFile, File(description="The .keras or .h5 file")],
    name: Annotated[str, Form(min_length=1, max_length=200, examples=["my-mlp"])],
    response: Response,
    options: Annotated[str | None, Form(description=OPTIONS_DESCRIPTION,
                                        examples=[OPTIONS_EXAMPLE])] = None,
) -> Model:
    """A Keras 3 `.keras` file or a legacy `.h5` is loaded in a child process (time and
    memory limits, `safe_mode` on), made into the blog's `train`/`infer`/`save`/`restore`
    module with its layers in inference mode, converted with Select TF ops and resource
    variables, then uploaded as by POST /v1/models: the same validation, 201 for a new
    model, 200 for the same result under the same name. The model carries `converted_from`.
    Admin only when keys are on."""
    parsed = service.options_from_json(options)
    limit = ctx.settings.max_model_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"Keras file is over the limit of {limit} bytes")
    row, created = await run_in_threadpool(service.convert, ctx, name=name, data=data,
                                           options=parsed)
    if not created:
        response.status_code = 200
    return Model.model_validate(row)
