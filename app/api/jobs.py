"""Training jobs: start, read, follow (Server-Sent Events), cancel, list, loss chart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnSession, OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, listed
from app.schemas.common import ListOf
from app.schemas.training import Job, JobCreate
from app.services import charts, jobs
from app.services.jobs import ACTIVE, JobView
from app.services.keyring import Principal

router = APIRouter(tags=["jobs"])
KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing the stream
ORPHAN_POLL_SECONDS = 1.0


@router.post("/v1/sessions/{session_id}/jobs", status_code=202, response_model=Job)
def create_job(ctx: CtxDep, who: PrincipalDep, session_id: OwnSession, body: JobCreate,
               response: Response) -> Job:
    """Queue epochs over a dataset; follow the Location header for progress."""
    view = jobs.create(ctx, session_id=session_id, dataset_id=body.dataset_id,
                       epochs=body.epochs, batch_size=body.batch_size, shuffle=body.shuffle,
                       seed=body.seed)
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    return Job.model_validate(view)


@router.get("/v1/jobs/{job_id}", response_model=Job)
def get_job(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Job:
    """A job with its progress and per-epoch losses."""
    return Job.model_validate(_owned(ctx, who, job_id))


def _owned(ctx: CtxDep, who: Principal, job_id: str) -> JobView:
    view = jobs.get(ctx, job_id=job_id)
    check_owner(who, view.user_id, "job", job_id)
    return view


@router.post("/v1/jobs/{job_id}/cancel", status_code=202, response_model=Job)
def cancel_job(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Job:
    """Stop the job after its current step; it ends "cancelled"."""
    _owned(ctx, who, job_id)
    return Job.model_validate(jobs.cancel(ctx, job_id=job_id))


@router.get("/v1/users/{user_id}/jobs", response_model=ListOf[Job])
def list_jobs(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
              cursor: Cursor = None) -> ListOf[Job]:
    """The user's jobs, newest first."""
    page = jobs.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Job, page)


@router.get("/v1/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(ctx: CtxDep, who: PrincipalDep, job_id: str,
                     request: Request) -> EventSourceResponse:
    """Server-Sent Events: `progress` while the job runs, then one `end` with the final state."""
    first = await run_in_threadpool(_owned, ctx, who, job_id)  # 404 before streaming
    stopping: asyncio.Event = request.app.state.stopping

    async def stream() -> AsyncIterator[ServerSentEvent]:
        view, seen = first, -1
        while True:
            data = orjson.dumps(Job.model_validate(view).model_dump(mode="json")).decode()
            if view.status not in ACTIVE:
                yield ServerSentEvent(data, event="end")
                return
            state = ctx.jobs.state(job_id)
            if state is None or state.version != seen:
                seen = state.version if state else -1
                yield ServerSentEvent(data, event="progress")
            if stopping.is_set():
                return  # the server is stopping: the job resumes after the restart
            if state is None:  # not run by this process (yet): its row is all there is
                await asyncio.sleep(ORPHAN_POLL_SECONDS)
            else:  # woken by the job's own progress, not by polling the database
                await state.wait_change(seen, timeout=ORPHAN_POLL_SECONDS, also=stopping)
            if stopping.is_set():
                return
            view = await run_in_threadpool(jobs.get, ctx, job_id=job_id)

    return EventSourceResponse(stream(), ping=KEEPALIVE_SECONDS,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/jobs/{job_id}/loss.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def job_loss_chart(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Response:
    """The job's mean loss per epoch as an SVG line chart."""
    view = _owned(ctx, who, job_id)
    svg = charts.loss_chart(view.metrics["epoch_loss"], title=f"job {job_id}: loss per epoch",
                            xlabel="epoch")
    return Response(svg, media_type="image/svg+xml")
