"""Training jobs: start, read, follow (Server-Sent Events), cancel, list, loss chart."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep, check_owner, check_user
from app.api.deps import Cursor, FleetDep, Limit, UserId, listed
from app.schemas.common import ListOf
from app.schemas.training import Job, JobCreate
from app.services import charts, jobs, sessions
from app.services.jobs import ACTIVE, JobView
from app.services.keyring import Principal

router = APIRouter(tags=["jobs"])
EVENT_INTERVAL = 0.25
KEEPALIVE_SECONDS = 15.0


@router.post("/v1/sessions/{session_id}/jobs", status_code=202, response_model=Job)
def create_job(fleet: FleetDep, who: PrincipalDep, session_id: str, body: JobCreate,
               response: Response) -> Job:
    """Queue epochs over a dataset; follow the Location header for progress."""
    check_owner(who, sessions.get_row(fleet, session_id=session_id).user_id, "session",
                session_id)
    view = jobs.create(fleet, session_id=session_id, dataset_id=body.dataset_id,
                       epochs=body.epochs, batch_size=body.batch_size, shuffle=body.shuffle,
                       seed=body.seed)
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    return Job.model_validate(view)


@router.get("/v1/jobs/{job_id}", response_model=Job)
def get_job(fleet: FleetDep, who: PrincipalDep, job_id: str) -> Job:
    """A job with its progress and per-epoch losses."""
    return Job.model_validate(_owned(fleet, who, job_id))


def _owned(fleet: FleetDep, who: Principal, job_id: str) -> JobView:
    view = jobs.get(fleet, job_id=job_id)
    check_owner(who, view.user_id, "job", job_id)
    return view


@router.post("/v1/jobs/{job_id}/cancel", status_code=202, response_model=Job)
def cancel_job(fleet: FleetDep, who: PrincipalDep, job_id: str) -> Job:
    """Stop the job after its current step; it ends "cancelled"."""
    _owned(fleet, who, job_id)
    return Job.model_validate(jobs.cancel(fleet, job_id=job_id))


@router.get("/v1/users/{user_id}/jobs", response_model=ListOf[Job])
def list_jobs(fleet: FleetDep, who: PrincipalDep, user_id: UserId, limit: Limit = 50,
              cursor: Cursor = None) -> ListOf[Job]:
    """The user's jobs, newest first."""
    check_user(who, user_id)
    page = jobs.get_all(fleet, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Job, page)


@router.get("/v1/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(fleet: FleetDep, who: PrincipalDep, job_id: str,
                     request: Request) -> StreamingResponse:
    """Server-Sent Events: `progress` while the job runs, then one `end` with the final state."""
    first = await run_in_threadpool(_owned, fleet, who, job_id)  # 404 before streaming

    stopping: asyncio.Event = request.app.state.stopping

    async def stream() -> AsyncIterator[bytes]:
        view, seen, quiet_since = first, -1, time.monotonic()
        while True:
            data = Job.model_validate(view).model_dump(mode="json")
            if view.status not in ACTIVE:
                yield b"event: end\ndata: " + orjson.dumps(data) + b"\n\n"
                return
            state = fleet.jobs.state(job_id)
            version = state.version if state else 0
            if version != seen:
                seen, quiet_since = version, time.monotonic()
                yield b"event: progress\ndata: " + orjson.dumps(data) + b"\n\n"
            elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"  # a comment: keeps proxies from closing the stream
            if stopping.is_set() or await request.is_disconnected():
                return  # the server is stopping: the job resumes after the restart
            await asyncio.sleep(EVENT_INTERVAL)
            view = await run_in_threadpool(jobs.get, fleet, job_id=job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/jobs/{job_id}/loss.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def job_loss_chart(fleet: FleetDep, who: PrincipalDep, job_id: str) -> Response:
    """The job's mean loss per epoch as an SVG line chart."""
    view = _owned(fleet, who, job_id)
    losses = [math.nan if v is None else v for v in view.metrics["epoch_loss"]]  # keep x
    svg = charts.line_chart(losses, title=f"job {job_id}: loss per epoch", xlabel="epoch")
    return Response(svg, media_type="image/svg+xml")
