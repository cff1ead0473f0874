"""Open Inference Protocol (KServe v2 REST) per session: signatures are the protocol's models.

Binary tensor data extension included, so tritonclient.http works with its defaults. ``train``
runs a counted train step in the session's strand, like POST /v1/sessions/{id}/train;
``save`` and ``restore`` take file paths and are not exposed. There is one version, "1".
Per-step infer calls on a live session are usually answered by app.api.fastlane before they
reach these routes; both run app.services.inference.run_protocol.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, check_owner
from app.api.deps import CtxDep
from app.api.problems import json_response
from app.services import inference, sessions
from app.services.context import Context
from app.services.keyring import Principal

router = APIRouter(prefix="/v1/sessions/{session_id}/v2", tags=["open inference protocol"])


@router.get("")
async def server_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                          request: Request) -> Response:
    """Server metadata: name, version, extensions."""
    live = await inference.live_session(ctx, who, session_id)
    return json_response({"name": "fleetlite", "version": request.app.version,
                          "extensions": inference.EXTENSIONS, "session_id": live.id,
                          "model_id": live.model_id})


@router.get("/health/live")
async def server_live(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """200 while the session exists."""
    live = ctx.pool.get(session_id)
    owner = (live.user_id if live else
             (await run_in_threadpool(sessions.get_row, ctx, session_id=session_id)).user_id)
    check_owner(who, owner, "session", session_id)
    return json_response({"live": True})


@router.get("/health/ready")
async def server_ready(ctx: CtxDep, who: PrincipalDep, session_id: str) -> Response:
    """200 once the session's interpreter is loaded (loading it if needed)."""
    await inference.live_session(ctx, who, session_id)
    return json_response({"ready": True})


@router.get("/models/{model_name}")
async def model_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                         model_name: str) -> Response:
    """A signature's inputs and outputs with protocol datatypes; -1 marks open dimensions."""
    return await _metadata(ctx, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}")
async def model_version_metadata(ctx: CtxDep, who: PrincipalDep, session_id: str,
                                 model_name: str, model_version: str) -> Response:
    """Model metadata for an explicit version (only "1" exists)."""
    return await _metadata(ctx, who, session_id, model_name, model_version)


@router.get("/models/{model_name}/ready")
async def model_ready(ctx: CtxDep, who: PrincipalDep, session_id: str,
                      model_name: str) -> Response:
    """200 when the session serves the model, else 404."""
    return await _ready(ctx, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}/ready")
async def model_version_ready(ctx: CtxDep, who: PrincipalDep, session_id: str,
                              model_name: str, model_version: str) -> Response:
    """Readiness of an explicit version (only "1" exists)."""
    return await _ready(ctx, who, session_id, model_name, model_version)


@router.post("/models/{model_name}/infer")
async def infer(ctx: CtxDep, who: PrincipalDep, session_id: str, model_name: str,
                request: Request) -> Response:
    """Run the signature: JSON or binary tensors in, JSON or binary tensors out."""
    return await _infer(ctx, who, session_id, model_name, None, request)


@router.post("/models/{model_name}/versions/{model_version}/infer")
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
