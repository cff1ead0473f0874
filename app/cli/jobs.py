"""`jobs`: start training on the server and follow it live (Server-Sent Events), show, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime
from typing import Annotated, Any, NoReturn

import httpx
import typer
from httpx_sse import EventSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.api import Api, fail, seg
from app.cli.groups import Typer
from app.cli.output import console, err_console, fields, loss, show, table, when
from app.cli.resources import Cursor, Limit, page_params, show_page
from app.cli.state import api, hint

jobs_app = Typer(help="Training jobs that run on the server.")
ACTIVE = ("queued", "running")
RECONNECTS = 5
INTERRUPTED = 130
MAX_EPOCH_ROWS, HEAD_ROWS = 20, 5  # longer jobs list the first 5 and the last 15 epochs


def job_updates(client: Api, job_id: str, lost: str) -> Iterator[dict[str, Any]]:
    """The job's states from its event stream, the final one last; reconnects if cut off.

    lost is the command to suggest if the stream cannot be had back.
    """
    failures = 0
    while True:
        try:
            with client.stream("GET", f"/v1/jobs/{seg(job_id)}/events",
                               headers={"Accept": "text/event-stream"}) as response:
                for event in EventSource(response).iter_sse():
                    if not event.data:
                        continue
                    failures = 0
                    yield event.json()
                    if event.event == "end":
                        return
        except httpx.TransportError:
            pass  # the stream broke mid-way (httpx_sse's SSEError is one): look, reconnect
        job = client.json("GET", f"/v1/jobs/{seg(job_id)}")
        if job["status"] not in ACTIVE:
            yield job
            return
        failures += 1
        if failures > RECONNECTS:
            fail(f"lost the event stream of job {job_id}, which is still {job['status']}; "
                 f"look at it with `{lost}`")
        time.sleep(min(2.0**failures, 10.0))


class ProgressBar:
    """A live bar: steps of total_steps, the epoch under way and the last epoch's loss."""

    def __init__(self, job: dict[str, Any], out: Console | None = None) -> None:
        # Basic ANSI colours: rich's defaults (rgb green when finished, over grey23) both fall
        # to bright black in a 16-colour terminal, where a finished bar looks like an empty one
        bar = BarColumn(style="bright_black", complete_style="magenta", finished_style="green",
                        pulse_style="magenta")
        self.progress = Progress(
            TextColumn("{task.description:<9}"), bar, MofNCompleteColumn(),
            TextColumn("steps  epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("last epoch loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=out or console())
        self.task = self.progress.add_task(job["status"], total=job["progress"]["total_steps"],
                                           epoch=0, epochs=job["epochs"], loss="-")

    def update(self, job: dict[str, Any]) -> None:
        """Move the bar to the job's progress."""
        losses = job["metrics"].get("epoch_loss") or [None]
        p = job["progress"]
        self.progress.update(self.task, description=job["status"], completed=p["step"],
                             total=p["total_steps"], epoch=p["epoch"], loss=loss(losses[-1]))


def follow(ctx: typer.Context, job: dict[str, Any]) -> dict[str, Any]:
    """Follow a job to its end, with a live progress bar unless --json; the final job."""
    final = job
    bar = None if ctx.obj.as_json else ProgressBar(job)
    lost = hint(ctx, "jobs", "show", job["id"])
    with bar.progress if bar else nullcontext():
        for final in job_updates(api(ctx), job["id"], lost):
            if bar:
                bar.update(final)
    return final


def cancel_after_interrupt(client: Api, job_id: str) -> NoReturn:
    """Ctrl-C while following: ask the server to cancel the job, then exit 130."""
    err = err_console()
    err.print(f"interrupted: asking the server to cancel job {job_id}", markup=False)
    try:
        job = client.json("POST", f"/v1/jobs/{seg(job_id)}/cancel", timeout=10)
        err.print(f"job {job_id} is {job['status']}; it stops after its current step"
                  if job["status"] in ACTIVE else f"job {job_id} had already ended: "
                  f"{job['status']}", markup=False)
    except (typer.Exit, KeyboardInterrupt):
        pass  # the error, if any, is printed; exit anyway
    raise typer.Exit(INTERRUPTED)


def duration(job: dict[str, Any]) -> str:
    """How long the job ran, e.g. ` in 3.2 s`, or nothing."""
    if not (job.get("started_at") and job.get("finished_at")):
        return ""
    span = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    return f" in {span.total_seconds():.1f} s"


def epoch_rows(n: int) -> list[int | None]:
    """Indices of the epochs to list: all of them, or the first and last few (None between)."""
    if n <= MAX_EPOCH_ROWS:
        return list(range(n))
    return [*range(HEAD_ROWS), None, *range(n - (MAX_EPOCH_ROWS - HEAD_ROWS), n)]


def render_job(ctx: typer.Context, job: dict[str, Any]) -> None:
    """A job: status line, one row per finished epoch, the loss chart link."""
    out = console()
    p = job["progress"]
    out.print(f"job {job['id']} {job['status']}{duration(job)}: {p['step']}/{p['total_steps']} "
              f"steps, {len(job['checkpoint_ids'])}/{job['epochs']} epochs, batch size "
              f"{job['batch_size']}", markup=False, soft_wrap=True)
    if job.get("error"):
        out.print(f"error: {job['error']}", markup=False, soft_wrap=True)
    losses, ckpts = job["metrics"].get("epoch_loss", []), job["checkpoint_ids"]
    if losses:
        table(("epoch", "loss", "checkpoint"),
              (("...", "...", "...") if i is None else
               (str(i + 1), loss(losses[i]), ckpts[i] if i < len(ckpts) else "-")
               for i in epoch_rows(len(losses))))
        if len(losses) > MAX_EPOCH_ROWS:
            every = hint(ctx, "--json", "jobs", "show", job["id"])
            out.print(f"(all {len(losses)} epochs: {every})", markup=False, soft_wrap=True)
    fields([("session", job["session_id"]), ("dataset", job["dataset_id"]),
            ("created", when(job["created_at"])),
            ("loss chart", api(ctx).absolute(job["links"]["loss_svg"]) if losses else None)])


def show_final(ctx: typer.Context, job: dict[str, Any]) -> NoReturn:
    """Print a finished job and exit 0 if it succeeded, 1 if not."""
    show(ctx, job, lambda j: render_job(ctx, j))
    raise typer.Exit(0 if job["status"] == "succeeded" else 1)


@jobs_app.command("run")
def jobs_run(
    ctx: typer.Context, session_id: str,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id of the same user.")],
    epochs: Annotated[int, typer.Option("--epochs", min=1)],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)],
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Shuffle seed.")] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle/--no-shuffle")] = True,
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return.")] = False,
) -> None:
    """Train SESSION_ID on a dataset for N epochs; follow it live unless --detach.

    Exits 0 when the job succeeds, 1 when it fails or is cancelled; Ctrl-C cancels it (130).
    """
    client = api(ctx)
    body = {"dataset_id": dataset, "epochs": epochs, "batch_size": batch_size,
            "shuffle": shuffle, **({"seed": seed} if seed is not None else {})}
    job = client.json("POST", f"/v1/sessions/{seg(session_id)}/jobs", json=body)
    if detach:
        show(ctx, job, lambda j: fields([
            ("job", j["id"]), ("status", j["status"]),
            ("follow", hint(ctx, "jobs", "follow", j["id"])),
            ("cancel", hint(ctx, "jobs", "cancel", j["id"]))]))
        return
    try:
        job = follow(ctx, job)
    except KeyboardInterrupt:
        cancel_after_interrupt(client, job["id"])
    show_final(ctx, job)


@jobs_app.command("follow")
def jobs_follow(ctx: typer.Context, job_id: str) -> None:
    """Follow a job live until it ends; Ctrl-C stops following and leaves the job running.

    Exits 0 when the job succeeds, 1 when it fails or is cancelled.
    """
    try:
        job = api(ctx).json("GET", f"/v1/jobs/{seg(job_id)}")
        err_console().print(f"following job {job_id}; Ctrl-C stops following, the job goes on",
                            markup=False, soft_wrap=True)
        job = follow(ctx, job)
    except KeyboardInterrupt:
        err_console().print(f"stopped following; job {job_id} goes on "
                            f"({hint(ctx, 'jobs', 'cancel', job_id)} stops it)",
                            markup=False, soft_wrap=True)
        raise typer.Exit(INTERRUPTED) from None
    show_final(ctx, job)


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str) -> None:
    """Show a job with its progress and per-epoch losses."""
    show(ctx, api(ctx).json("GET", f"/v1/jobs/{seg(job_id)}"), lambda j: render_job(ctx, j))


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str) -> None:
    """Ask a job to stop after its current step (it ends cancelled)."""
    job = api(ctx).json("POST", f"/v1/jobs/{seg(job_id)}/cancel")
    show(ctx, job, lambda j: fields([("job", j["id"]), ("status", j["status"])]))


@jobs_app.command("list")
def jobs_list(ctx: typer.Context, user: str, limit: Limit = 50, cursor: Cursor = None) -> None:
    """List USER's jobs, newest first."""
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/jobs", params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "session", "status", "steps", "epochs", "last loss"),
              lambda j: (j["id"], j["session_id"], j["status"],
                         f"{j['progress']['step']}/{j['progress']['total_steps']}",
                         f"{len(j['checkpoint_ids'])}/{j['epochs']}",
                         loss((j["metrics"].get("epoch_loss") or [None])[-1])))
