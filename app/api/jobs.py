"""Training jobs: start, read, follow (Server-Sent Events), cancel, list, loss chart."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnSession, OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, listed
from app.api.openapi import event_stream
from app.api.streams import progress_stream
from app.schemas.common import ListOf
from app.schemas.training import Job, JobCreate
from app.services import charts, jobs
from app.services.jobs import JobView
from app.services.keyring import Principal

router = APIRouter(tags=["jobs"])


@router.post("/v1/sessions/{session_id}/jobs", status_code=202, response_model=Job,
             summary="Start a training job",
             description="Queue `epochs` over one of the user's datasets in batches of "
             "`batch_size`, shuffled per (seed, epoch), with a checkpoint (`kind: \"epoch\"`) "
             "after each epoch. The job runs on the server and resumes after a restart; "
             "`Location` is its URL. While it runs, `train` on the session answers 409 and "
             "`infer` works.",
             responses={202: {"headers": {"Location": {"description": "The job's URL",
                                                       "schema": {"type": "string"}}}}})
def create_job(ctx: CtxDep, who: PrincipalDep, session_id: OwnSession, body: JobCreate,
               response: Response) -> Job:
    """Queue epochs over a dataset; follow the Location header for progress."""
    view = jobs.create(ctx, session_id=session_id, dataset_id=body.dataset_id,
                       epochs=body.epochs, batch_size=body.batch_size, shuffle=body.shuffle,
                       seed=body.seed)
    response.headers["Location"] = f"/v1/jobs/{view.id}"
    return Job.model_validate(view)


@router.get("/v1/jobs/{job_id}", response_model=Job, summary="Get a job",
            description="A job: its status, progress, the mean loss of each finished epoch "
            "and the checkpoint each one left.")
def get_job(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Job:
    """A job with its progress and per-epoch losses."""
    return Job.model_validate(_owned(ctx, who, job_id))


def _owned(ctx: CtxDep, who: Principal, job_id: str) -> JobView:
    view = jobs.get(ctx, job_id=job_id)
    check_owner(who, view.user_id, "job", job_id)
    return view


@router.post("/v1/jobs/{job_id}/cancel", status_code=202, response_model=Job,
             summary="Cancel a job",
             description="Ask the job to stop after the step under way; it ends "
             "`cancelled` and keeps the checkpoints of the epochs it finished.")
def cancel_job(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Job:
    """Stop the job after its current step; it ends "cancelled"."""
    _owned(ctx, who, job_id)
    return Job.model_validate(jobs.cancel(ctx, job_id=job_id))


@router.get("/v1/users/{user_id}/jobs", response_model=ListOf[Job],
            summary="List a user's jobs",
            description="The user's jobs, newest first, a page at a time.")
def list_jobs(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
              cursor: Cursor = None) -> ListOf[Job]:
    """The user's jobs, newest first."""
    page = jobs.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Job, page)


@router.get("/v1/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses=event_stream("Job"),
            summary="Follow a job",
            description="Server-Sent Events: a `progress` event with the Job each time it "
            "moves, then one `end` event with its final state.")
async def job_events(ctx: CtxDep, who: PrincipalDep, job_id: str,
                     request: Request) -> EventSourceResponse:
    """Server-Sent Events: `progress` while the job runs, then one `end` with the final state."""
    first = await run_in_threadpool(_owned, ctx, who, job_id)  # 404 before streaming
    return progress_stream(
        first, lambda: jobs.get(ctx, job_id=job_id),
        lambda v: Job.model_validate(v).model_dump(mode="json"),
        lambda: ctx.jobs.state(job_id), request.app.state.stopping,
        interval=ctx.settings.event_interval_seconds)


@router.get("/v1/jobs/{job_id}/loss.svg", response_class=Response,
            responses={200: {"description": "An SVG image",
                             "content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
            summary="Chart a job's losses",
            description="The job's mean loss per epoch as an SVG line chart.")
def job_loss_chart(ctx: CtxDep, who: PrincipalDep, job_id: str) -> Response:
    """The job's mean loss per epoch as an SVG line chart."""
    view = _owned(ctx, who, job_id)
    svg = charts.loss_chart(view.metrics["epoch_loss"], title=f"job {job_id}: loss per epoch",
                            xlabel="epoch")
    return Response(svg, media_type="image/svg+xml")
