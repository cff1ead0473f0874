"""Phone readiness reports of models, and app bundles of sessions and fleets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnSession, PrincipalDep, check_owner
from app.api.deps import CtxDep
from app.schemas.model_report import ModelReport
from app.services import bundle, model_report

router = APIRouter()  # each route names its one tag: Swagger UI lists a route once a tag

_ZIP: dict[int | str, dict[str, Any]] = {200: {"description": "The bundle (a zip)", "content": {
    "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}
_HTML: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}}}}
_BUNDLE = ("A zip an app ships: `model.tflite`, `checkpoint.ckpt` (the weights, as the "
           "model's save signature writes them), `manifest.json` (the model's id and the "
           "files' sha256s, each signature's inputs and outputs, where the weights come from, "
           "the label names when the dataset carries them) and `Infer.kt` / `Infer.swift`, "
           "which restore the checkpoint and call `infer`. `ETag` is the zip's sha256.")


def _zip(made: bundle.Bundle) -> Response:
    return Response(made.data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "ETag": f'"{made.sha256}"'})


@router.get("/v1/models/{model_id}/report", response_model=ModelReport, tags=["models"],
            summary="A model's phone readiness",
            description="Per signature, the operators and their counts read from the model's "
            "flatbuffer, split into TFLite built-ins and Select TF (Flex) ops; the model's "
            "and a checkpoint's size; trainable and frozen parameters; the train and infer "
            "times measured on this server and what each device class of `GET /v1/devices` "
            "implies; what shipping it costs (TensorFlow's published runtime sizes, with "
            "their source) and the Gradle and CocoaPods lines an app needs. Select TF ops "
            "beyond what training needs are named in `flex_beyond_training` and `notes`. The "
            "first report of a model measures it (about a second).")
async def model_report_json(ctx: CtxDep, model_id: str) -> ModelReport:
    """The phone-readiness report of a model."""
    report = await run_in_threadpool(model_report.build, ctx, model_id=model_id)
    return ModelReport.model_validate(report)


@router.get("/v1/models/{model_id}/report.html", response_class=Response, responses=_HTML,
            tags=["models"], summary="A model's phone readiness: page",
            description="The report of `GET /v1/models/{model_id}/report` as one page, "
            "readable offline: no script, no external asset.")
async def model_report_page(ctx: CtxDep, model_id: str) -> Response:
    """The phone-readiness report as a page."""
    html = await run_in_threadpool(model_report.page, ctx, model_id=model_id)
    return Response(html, media_type="text/html")


@router.get("/v1/sessions/{session_id}/bundle", response_class=Response, responses=_ZIP,
            tags=["sessions"], summary="A session's app bundle",
            description=_BUNDLE + " The weights are the session's current ones: saved as a "
            "checkpoint now (`kind: \"manual\"`, label `app bundle`) if it has steps no "
            "checkpoint holds, else its head checkpoint. With `dataset_id`, the manifest's "
            "`label_names` are that dataset's (a 1-D string array named `label_names`).")
async def session_bundle(
    ctx: CtxDep, who: PrincipalDep, session_id: OwnSession,
    dataset_id: Annotated[str | None, Query(description="One of your datasets: its "
                                            "`label_names` go in the manifest")] = None,
) -> Response:
    """The app bundle of a session's current weights."""
    return _zip(await bundle.of_session(ctx, who, session_id, dataset_id))


@router.get("/v1/fleets/{fleet_id}/bundle", response_class=Response, responses=_ZIP,
            tags=["fleets"], summary="A fleet's app bundle",
            description=_BUNDLE + " The weights are the fleet's final global model (its last "
            "committed round); 409 while the fleet is queued, running or paused.")
def fleet_bundle(ctx: CtxDep, who: PrincipalDep, fleet_id: str) -> Response:
    """The app bundle of a finished fleet's global model."""
    row = bundle.fleet_row(ctx, fleet_id=fleet_id)
    check_owner(who, row.user_id, "fleet", fleet_id)
    return _zip(bundle.of_fleet(ctx, row))


@router.get("/v1/fleets/{fleet_id}/clients/{client_id}/bundle", response_class=Response,
            responses=_ZIP, tags=["fleets"], summary="A device's app bundle",
            description=_BUNDLE + " The weights are the device's personalized model (its "
            "checkpoint after its last update); 404 for a device that never took part, 409 "
            "while the fleet is queued, running or paused.")
def client_bundle(ctx: CtxDep, who: PrincipalDep, fleet_id: str,
                  client_id: Annotated[int, Path(ge=0, le=2**31 - 1)]) -> Response:
    """The app bundle of one device's personalized model in a finished fleet."""
    row = bundle.fleet_row(ctx, fleet_id=fleet_id)
    check_owner(who, row.user_id, "fleet", fleet_id)
    return _zip(bundle.of_client(ctx, row, client_id=client_id))
