"""Fleets: start, read, follow (Server-Sent Events), cancel, rounds, clients, report, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, listed
from app.api.openapi import event_stream
from app.api.streams import progress_stream
from app.schemas.common import ListOf
from app.schemas.fleets import (
    Client,
    ClientDetail,
    Comparison,
    Fleet,
    FleetSpec,
    Report,
    Round,
)
from app.services import fleet as fleets
from app.services.context import Context
from app.services.fleet import FleetView
from app.services.keyring import Principal

router = APIRouter(tags=["fleets"])
FleetId = Annotated[str, Path(description="A fleet's id",
                              examples=["flt_01a22e0d1a2b3c4d5e6f7081"])]


@router.post("/v1/users/{user_id}/fleets", status_code=202, response_model=Fleet,
             summary="Start a fleet")
def create_fleet(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, body: FleetSpec,
                 response: Response) -> Fleet:
    """Start a fleet: a population of simulated devices trained in federated rounds."""
    view = fleets.create(ctx, user_id=user_id, spec=body.model_dump(by_alias=True))
    response.headers["Location"] = f"/v1/fleets/{view.id}"
    return Fleet.model_validate(view)


@router.get("/v1/users/{user_id}/fleets", response_model=ListOf[Fleet],
            summary="List a user's fleets")
def list_fleets(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
                cursor: Cursor = None) -> ListOf[Fleet]:
    """The user's fleets, newest first."""
    return listed(Fleet, fleets.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor))


CompareIds = Annotated[str, Query(
    description="2 to 16 fleet ids, comma-separated",
    pattern=r"^[^,\s\x00-\x1f\x7f-\x9f]+(,[^,\s\x00-\x1f\x7f-\x9f]+){1,15}$",
    examples=["flt_01a22e0d1a2b3c4d5e6f7081,flt_01a22e0d2b3c4d5e6f708192"])]


@router.get("/v1/fleets/compare", response_model=Comparison, summary="Compare fleets")
def compare_fleets(ctx: CtxDep, who: PrincipalDep, ids: CompareIds) -> Comparison:
    """What-if: fleets side by side, accuracy against virtual time and their summaries."""
    return Comparison.model_validate(fleets.compare(ctx, who, _ids(ids)))


@router.get("/v1/fleets/compare.html", response_class=Response, summary="Compare fleets: page",
            responses={200: {"content": {"text/html": {}}}})
def compare_fleets_page(ctx: CtxDep, who: PrincipalDep, ids: CompareIds) -> Response:
    """The comparison as a page: the chart and one row per fleet."""
    data = fleets.compare(ctx, who, _ids(ids))
    return Response(fleets.compare_page(data), media_type="text/html")


def _ids(ids: str) -> list[str]:
    return [i.strip() for i in ids.split(",") if i.strip()]


def _owned(ctx: Context, who: Principal, fleet_id: str) -> FleetView:
    view = fleets.get(ctx, fleet_id=fleet_id)
    check_owner(who, view.user_id, "fleet", fleet_id)
    return view


@router.get("/v1/fleets/{fleet_id}", response_model=Fleet, summary="Get a fleet")
def get_fleet(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId) -> Fleet:
    """A fleet with its progress."""
    return Fleet.model_validate(_owned(ctx, who, fleet_id))


@router.post("/v1/fleets/{fleet_id}/cancel", status_code=202, response_model=Fleet,
             summary="Cancel a fleet")
def cancel_fleet(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId) -> Fleet:
    """End the fleet after the round under way; the rounds it finished stay."""
    _owned(ctx, who, fleet_id)
    return Fleet.model_validate(fleets.cancel(ctx, fleet_id=fleet_id))


@router.delete("/v1/fleets/{fleet_id}", status_code=204, response_class=Response,
               summary="Delete a fleet")
def delete_fleet(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId) -> Response:
    """Delete a fleet with its sessions and checkpoints (409 while it runs)."""
    _owned(ctx, who, fleet_id)
    fleets.delete(ctx, fleet_id=fleet_id)
    return Response(status_code=204)


@router.get("/v1/fleets/{fleet_id}/rounds", response_model=ListOf[Round],
            summary="List a fleet's rounds")
def list_rounds(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId, limit: Limit = 500,
                cursor: Cursor = None) -> ListOf[Round]:
    """The finished rounds, oldest first (`cursor`: the last round number seen)."""
    _owned(ctx, who, fleet_id)
    return listed(Round, fleets.rounds(ctx, fleet_id=fleet_id, limit=limit, cursor=cursor))


@router.get("/v1/fleets/{fleet_id}/clients", response_model=ListOf[Client],
            summary="List a fleet's clients")
def list_clients(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId, limit: Limit = 50,
                 cursor: Cursor = None) -> ListOf[Client]:
    """The fleet's clients by client_id."""
    _owned(ctx, who, fleet_id)
    return listed(Client, fleets.clients(ctx, fleet_id=fleet_id, limit=limit,
                                              cursor=cursor))


@router.get("/v1/fleets/{fleet_id}/clients/{client_id}", response_model=ClientDetail,
            summary="Get a client")
def get_client(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId,
               client_id: int) -> ClientDetail:
    """One client, with its updates on the virtual clock and its availability windows."""
    _owned(ctx, who, fleet_id)
    return ClientDetail.model_validate(fleets.client(ctx, fleet_id=fleet_id,
                                                          client_id=client_id))


@router.get("/v1/fleets/{fleet_id}/report", response_model=Report, summary="Get a fleet's report")
def get_report(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId) -> Report:
    """Accuracy per round, personalization's effect, and who each device class is served by."""
    _owned(ctx, who, fleet_id)
    return Report.model_validate(fleets.report(ctx, fleet_id=fleet_id))


@router.get("/v1/fleets/{fleet_id}/report.html", response_class=Response,
            summary="A fleet's report: page", responses={200: {"content": {"text/html": {}}}})
def get_report_page(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId) -> Response:
    """The report as a page a person reads: numbers and charts, no script."""
    _owned(ctx, who, fleet_id)
    return Response(fleets.report_page(ctx, fleet_id=fleet_id), media_type="text/html")


@router.get("/v1/fleets/{fleet_id}/events", response_class=EventSourceResponse,
            summary="Follow a fleet", responses=event_stream("Fleet"))
async def fleet_events(ctx: CtxDep, who: PrincipalDep, fleet_id: FleetId,
                       request: Request) -> EventSourceResponse:
    """Server-Sent Events: `progress` as updates finish and rounds end, then one `end`."""
    first = await run_in_threadpool(_owned, ctx, who, fleet_id)  # 404 before streaming
    return progress_stream(
        first, lambda: fleets.get(ctx, fleet_id=fleet_id),
        lambda v: Fleet.model_validate(v).model_dump(mode="json"),
        lambda: ctx.fleets.state(fleet_id), request.app.state.stopping,
        interval=ctx.settings.event_interval_seconds)
