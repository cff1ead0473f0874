"""Open Inference Protocol (KServe v2 REST) per session: signatures are the protocol's models.

Binary tensor data extension included, so tritonclient.http works with its defaults. ``train``
runs a counted train step in the session's strand, like POST /v1/sessions/{id}/train;
``save`` and ``restore`` take file paths and are not exposed. There is one version, "1".
Per-step infer calls on a live session are usually answered by app.api.fastlane before they
reach these routes; both run app.services.inference.run_protocol.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, check_owner
from app.api.deps import CtxDep
from app.api.openapi import json_body
from app.api.problems import json_response
from app.schemas.oip import InferRequest, InferResponse, Live, ModelMetadata, Ready, ServerMetadata
from app.services import inference, sessions
from app.services.context import Context
from app.services.keyring import Principal

router = APIRouter(prefix="/v1/sessions/{session_id}/v2", tags=["open inference protocol"])
_X = {"name": "x", "shape": [2, 4], "datatype": "FP32",
      "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}
INFER_REQUEST = json_body(
    InferRequest, infer_a_batch_of_two={"id": "1", "inputs": [_X]},
    train_a_batch_of_two={"inputs": [_X, {"name": "y", "shape": [2, 3], "datatype": "FP32",
                                          "data": [1, 0, 0, 0, 0, 1]}]})
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {200: {
    "model": InferResponse,
    "description": "JSON outputs; with binary outputs asked for, the JSON header then the "
                   "raw tensors (`Inference-Header-Content-Length` says where they start)",
    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}}
_METADATA = "A signature as a protocol model: its inputs and outputs with protocol datatypes"


@router.get("", summary="Protocol server metadata", responses={200: {"model": ServerMetadata}},
            description="The session as a protocol server: name, version and extensions "
            "(binary tensor data), with its session and model ids.")
async def server_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                          request: Request) -> Response:
    """Server metadata: name, version, extensions."""
    live = await inference.live_session(ctx, who, session_id)
    return json_response({"name": "fleetlite", "version": request.app.version,
                          "extensions": inference.EXTENSIONS, "session_id": live.id,
                          "model_id": live.model_id})


@router.get("/health/live", summary="Protocol liveness", responses={200: {"model": Live}},
            description="200 while the session exists.")
async def server_live(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """200 while the session exists."""
    live = ctx.pool.get(session_id)
    owner = (live.user_id if live else
             (await run_in_threadpool(sessions.get_row, ctx, session_id=session_id)).user_id)
    check_owner(who, owner, "session", session_id)
    return json_response({"live": True})


@router.get("/health/ready", summary="Protocol readiness", responses={200: {"model": Ready}},
            description="200 once the session's interpreter is loaded (loading it if it "
            "was not).")
async def server_ready(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """200 once the session's interpreter is loaded (loading it if needed)."""
    await inference.live_session(ctx, who, session_id)
    return json_response({"ready": True})


@router.get("/models/{model_name}", summary="Signature metadata",
            responses={200: {"model": ModelMetadata}},
            description=f"{_METADATA}; -1 marks a dimension the model leaves open.")
async def model_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                         model_name: str) -> Response:
    """A signature's inputs and outputs with protocol datatypes; -1 marks open dimensions."""
    return await _metadata(ctx, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}",
            summary="Signature metadata, versioned", responses={200: {"model": ModelMetadata}},
            description=f"{_METADATA}, for an explicit version (only \"1\" exists).")
async def model_version_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                                 model_name: str, model_version: str) -> Response:
    """Model metadata for an explicit version (only "1" exists)."""
    return await _metadata(ctx, who, session_id, model_name, model_version)


@router.get("/models/{model_name}/ready", summary="Signature readiness",
            responses={200: {"model": Ready}},
            description="200 when the session serves this signature, else 404.")
async def model_ready(ctx: CtxDep, who: PrincipalDep, session_id: str,
                      model_name: str) -> Response:
    """200 when the session serves the model, else 404."""
    return await _ready(ctx, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}/ready",
            summary="Signature readiness, versioned", responses={200: {"model": Ready}},
            description="Readiness of an explicit version (only \"1\" exists).")
async def model_version_ready(ctx: CtxDep, who: PrincipalDep, session_id: str,
                              model_name: str, model_version: str) -> Response:
    """Readiness of an explicit version (only "1" exists)."""
    return await _ready(ctx, who, session_id, model_name, model_version)


@router.post("/models/{model_name}/infer", summary="Protocol infer (or train)",
             openapi_extra=INFER_REQUEST, responses=INFER_RESPONSES,
             description="Run the signature named `model_name`: JSON or binary tensors in, "
             "JSON or binary tensors out. `train` runs one counted train step, like POST "
             "/v1/sessions/{session_id}/train; `save` and `restore` are not exposed. Tensors "
             "are checked against the signature first (422 naming the tensor); a body that "
             "is not a protocol request answers 400.")
async def infer(ctx: CtxDep, who: PrincipalDep, session_id: str, model_name: str,
                request: Request) -> Response:
    """Run the signature: JSON or binary tensors in, JSON or binary tensors out."""
    return await _infer(ctx, who, session_id, model_name, None, request)


@router.post("/models/{model_name}/versions/{model_version}/infer",
             summary="Protocol infer (or train), versioned", openapi_extra=INFER_REQUEST,
             responses=INFER_RESPONSES,
             description="Protocol infer on an explicit version (only \"1\" exists).")
async def version_infer(ctx: CtxDep, who: PrincipalDep, session_id: str, model_name: str,
                        model_version: str, request: Request) -> Response:
    """Infer on an explicit version (only "1" exists)."""
    return await _infer(ctx, who, session_id, model_name, model_version, request)


async def _metadata(ctx: Context, who: Principal, session_id: str, name: str,
                    version: str | None) -> Response:
    live = await inference.live_session(ctx, who, session_id)
    return json_response(inference.protocol_metadata(live, name, version))


async def _ready(ctx: Context, who: Principal, session_id: str, name: str,
                 version: str | None) -> Response:
    live = await inference.live_session(ctx, who, session_id)
    inference.protocol_model(live, name, version)
    return json_response({"name": name, "ready": True})


async def _infer(ctx: Context, who: Principal, session_id: str, name: str,
                 version: str | None, request: Request) -> Response:
    payload, headers = await inference.run_protocol(
        ctx, who, session_id, name, version, await request.body(),
        encoding=request.headers.get("content-encoding"),
        header_length=request.headers.get(inference.HEADER_LENGTH))
    return Response(payload, headers=headers)
