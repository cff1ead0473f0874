"""Open Inference Protocol (KServe v2 REST) per session: signatures are the protocol's models.

Binary tensor data extension included, so tritonclient.http works with its defaults. ``train``
runs a counted train step in the session's strand, like POST /v1/sessions/{id}/train;
``save`` and ``restore`` take file paths and are not exposed. There is one version, "1".
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, check_owner
from app.api.deps import FleetDep, live_session, on_session
from app.api.problems import json_response
from app.errors import NotFound
from app.metrics import SIGNATURE_CALLS, TRAIN_STEPS
from app.runtime import oip_codec
from app.runtime.codec import check_limits
from app.runtime.pool import LiveSession
from app.runtime.signatures import CHECKPOINT_SIGNATURES, SignatureSpec
from app.services import sessions
from app.services.fleet import Fleet
from app.services.keyring import Principal

router = APIRouter(prefix="/v1/sessions/{session_id}/v2", tags=["open inference protocol"])

VERSION = "1"
PLATFORM = "tflite"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "Inference-Header-Content-Length"


def _model(live: LiveSession, name: str, version: str | None) -> SignatureSpec:
    """The signature behind a protocol model, or 404 for unknown models and versions."""
    spec = live.signatures.get(name)
    if spec is None or name in CHECKPOINT_SIGNATURES:
        models = ", ".join(sorted(n for n in live.signatures if n not in CHECKPOINT_SIGNATURES))
        raise NotFound(f"unknown model '{name}': this session serves {models}")
    if version not in (None, "", VERSION):
        raise NotFound(
            f"unknown version '{version}' of model '{name}': the only version is '{VERSION}'"
        )
    return spec


@router.get("")
async def server_metadata(
    fleet: FleetDep, who: PrincipalDep, session_id: str, request: Request
) -> Response:
    """Server metadata: name, version, extensions."""
    live = await live_session(fleet, who, session_id)
    return json_response(
        {
            "name": "fleetlite",
            "version": request.app.version,
            "extensions": EXTENSIONS,
            "session_id": live.id,
            "model_id": live.model_id,
        }
    )


@router.get("/health/live")
async def server_live(fleet: FleetDep, who: PrincipalDep, session_id: str) -> Response:
    """200 while the session exists."""
    live = fleet.pool.get(session_id)
    owner = (
        live.user_id
        if live
        else (await run_in_threadpool(sessions.get_row, fleet, session_id=session_id)).user_id
    )
    check_owner(who, owner, "session", session_id)
    return json_response({"live": True})


@router.get("/health/ready")
async def server_ready(fleet: FleetDep, who: PrincipalDep, session_id: str) -> Response:
    """200 once the session's interpreter is loaded (loading it if needed)."""
    await live_session(fleet, who, session_id)
    return json_response({"ready": True})


@router.get("/models/{model_name}")
async def model_metadata(
    fleet: FleetDep, who: PrincipalDep, session_id: str, model_name: str
) -> Response:
    """A signature's inputs and outputs with protocol datatypes; -1 marks open dimensions."""
    return await _metadata(fleet, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}")
async def model_version_metadata(
    fleet: FleetDep, who: PrincipalDep, session_id: str, model_name: str, model_version: str
) -> Response:
    """Model metadata for an explicit version (only "1" exists)."""
    return await _metadata(fleet, who, session_id, model_name, model_version)


@router.get("/models/{model_name}/ready")
async def model_ready(
    fleet: FleetDep, who: PrincipalDep, session_id: str, model_name: str
) -> Response:
    """200 when the session serves the model, else 404."""
    return await _ready(fleet, who, session_id, model_name, None)


@router.get("/models/{model_name}/versions/{model_version}/ready")
async def model_version_ready(
    fleet: FleetDep, who: PrincipalDep, session_id: str, model_name: str, model_version: str
) -> Response:
    """Readiness of an explicit version (only "1" exists)."""
    return await _ready(fleet, who, session_id, model_name, model_version)


@router.post("/models/{model_name}/infer")
async def infer(
    fleet: FleetDep, who: PrincipalDep, session_id: str, model_name: str, request: Request
) -> Response:
    """Run the signature: JSON or binary tensors in, JSON or binary tensors out."""
    return await _infer(fleet, who, session_id, model_name, None, request)


@router.post("/models/{model_name}/versions/{model_version}/infer")
async def version_infer(
    fleet: FleetDep,
    who: PrincipalDep,
    session_id: str,
    model_name: str,
    model_version: str,
    request: Request,
) -> Response:
    """Infer on an explicit version (only "1" exists)."""
    return await _infer(fleet, who, session_id, model_name, model_version, request)


async def _metadata(
    fleet: FleetDep, who: Principal, session_id: str, name: str, version: str | None
) -> Response:
    live = await live_session(fleet, who, session_id)
    spec = _model(live, name, version)
    return json_response(oip_codec.model_metadata(name, spec, VERSION, PLATFORM))


async def _ready(
    fleet: FleetDep, who: Principal, session_id: str, name: str, version: str | None
) -> Response:
    live = await live_session(fleet, who, session_id)
    _model(live, name, version)
    return json_response({"name": name, "ready": True})


async def _infer(
    fleet: FleetDep,
    who: Principal,
    session_id: str,
    name: str,
    version: str | None,
    request: Request,
) -> Response:
    body = await request.body()
    payload, headers = await run_infer(
        fleet, who, session_id, name, version, body,
        encoding=request.headers.get("content-encoding"),
        header_length=request.headers.get(HEADER_LENGTH),
    )
    return Response(payload, headers=headers)


async def run_infer(
    fleet: Fleet,
    who: Principal,
    session_id: str,
    name: str,
    version: str | None,
    body: bytes,
    *,
    encoding: str | None,
    header_length: str | None,
) -> tuple[bytes, dict[str, str]]:
    """One protocol infer call on a session: the response body and its headers.

    Shared by the route above and by the fast lane (app.api.fastlane), which calls it
    without FastAPI's routing for the per-step path.
    """
    live = await live_session(fleet, who, session_id)
    spec = _model(live, name, version)
    body = oip_codec.decompress(body, encoding, fleet.settings.max_request_bytes)
    parsed = oip_codec.parse_request(body, header_length, spec, name)
    check_limits(spec, parsed.inputs, sessions.limits(fleet))
    outputs, step = await on_session(
        fleet, who, session_id, lambda s: partial(s.run_arrays, name, parsed.inputs)
    )
    params: dict[str, Any] | None = None
    if name == "train":
        TRAIN_STEPS.inc()
        params = {"step": step}
    else:
        SIGNATURE_CALLS.labels(name).inc()
    payload, split = oip_codec.build_response(name, VERSION, parsed, outputs, params)
    if split is None:
        return payload, {"content-type": "application/json"}
    return payload, {"content-type": "application/octet-stream", HEADER_LENGTH: str(split)}
