"""`jobs`: start training on the server and follow it live (Server-Sent Events), show, cancel."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, TextColumn

from app.cli.api import Api, seg
from app.cli.bars import Elapsed, fit, live
from app.cli.follow import (
    follow_existing,
    run_to_end,
    show_cancelled,
    show_final,
    show_started,
)
from app.cli.groups import Typer
from app.cli.output import console, duration, fields, loss, show, table, when
from app.cli.resources import Cursor, Limit, Wide, page_params, show_page
from app.cli.state import api, hint

jobs_app = Typer(help="Training jobs that run on the server.")
MAX_EPOCH_ROWS, HEAD_ROWS = 20, 5  # longer jobs list the first 5 and the last 15 epochs
DEFAULT_BATCH = 32


class ProgressBar:
    """A live bar: steps of total_steps, the epoch under way and the last epoch's loss; the
    labels shorten, then go, to keep the count and the elapsed time on a narrow terminal."""

    def __init__(self, job: dict[str, Any], out: Console | None = None) -> None:
        self.progress, self.bar = live(MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                                       Elapsed(), out=out or console())
        self.task = self.progress.add_task(job["status"], total=job["progress"]["total_steps"],
                                           note="steps")

    def update(self, job: dict[str, Any]) -> None:
        """Move the bar to the job's progress."""
        last = loss((job["metrics"].get("epoch_loss") or [None])[-1])
        p = job["progress"]
        self.progress.update(self.task, description=job["status"], completed=p["step"],
                             total=p["total_steps"])
        epoch = f"{p['epoch']}/{job['epochs']}"
        fit(self.progress, self.bar, self.task, [
            {"note": f"steps  epoch {epoch}  last epoch loss {last}"},
            {"note": f"steps ep {epoch} loss {last}"}, {"note": "steps"}])


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
              f"{job['batch_size']}", markup=False)
    if job.get("error"):
        out.print(f"error: {job['error']}", markup=False)
    losses, ckpts = job["metrics"].get("epoch_loss", []), job["checkpoint_ids"]
    if losses:
        table(("epoch", "loss", "checkpoint"),
              (("...", "...", "...") if i is None else
               (str(i + 1), loss(losses[i]), ckpts[i] if i < len(ckpts) else "-")
               for i in epoch_rows(len(losses))))
        if len(losses) > MAX_EPOCH_ROWS:
            every = hint(ctx, "--json", "jobs", "show", job["id"])
            out.print(f"(all {len(losses)} epochs: {every})", markup=False)
    fields([("session", job["session_id"]), ("dataset", job["dataset_id"]),
            ("created", when(job["created_at"])),
            ("loss chart", api(ctx).absolute(job["links"]["loss_svg"]) if losses else None)])


def model_batch_size(client: Api, session_id: str) -> int:
    """The batch size the session's model fixes in its train signature's first input, or
    DEFAULT_BATCH when that dimension is open (-1)."""
    session = client.json("GET", f"/v1/sessions/{seg(session_id)}")
    model = client.json("GET", f"/v1/models/{seg(session['model_id'])}")
    inputs = ((model.get("signatures") or {}).get("train") or {}).get("inputs") or {}
    first = [spec["shape"][0] for spec in inputs.values() if spec.get("shape")]
    return first[0] if first and first[0] > 0 else DEFAULT_BATCH


def job_done(ctx: typer.Context, job: dict[str, Any]) -> NoReturn:
    """Print a finished job and exit 0 if it succeeded, 1 if not."""
    show_final(ctx, job, lambda j: render_job(ctx, j))


@jobs_app.command("run")
def jobs_run(
    ctx: typer.Context, session_id: str,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset id of the same user.")],
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 1,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", min=1, show_default=False,
        help="Default: the batch size the model's train signature fixes, else 32.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Shuffle seed.")] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle/--no-shuffle")] = True,
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return.")] = False,
) -> None:
    """Train SESSION_ID on a dataset for N epochs; follow it live unless --detach.

    Exits 0 when the job succeeds, 1 when it fails or is cancelled; Ctrl-C cancels it (130).
    """
    client = api(ctx)
    if batch_size is None:
        batch_size = model_batch_size(client, session_id)
    body = {"dataset_id": dataset, "epochs": epochs, "batch_size": batch_size,
            "shuffle": shuffle, **({"seed": seed} if seed is not None else {})}
    job = client.json("POST", f"/v1/sessions/{seg(session_id)}/jobs", json=body)
    if detach:
        show_started(ctx, "job", job)
        return
    job_done(ctx, run_to_end(ctx, "job", job, ProgressBar, "after its current step"))


@jobs_app.command("follow")
def jobs_follow(ctx: typer.Context, job_id: str) -> None:
    """Follow a job live until it ends; Ctrl-C stops following and leaves the job running.

    Exits 0 when the job succeeds, 1 when it fails or is cancelled.
    """
    job_done(ctx, follow_existing(ctx, "job", job_id, ProgressBar))


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str) -> None:
    """Show a job with its progress and per-epoch losses."""
    show(ctx, api(ctx).json("GET", f"/v1/jobs/{seg(job_id)}"), lambda j: render_job(ctx, j))


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str) -> None:
    """Ask a job to stop after its current step (it ends cancelled)."""
    show_cancelled(ctx, "job", api(ctx).json("POST", f"/v1/jobs/{seg(job_id)}/cancel"))


@jobs_app.command("list")
def jobs_list(ctx: typer.Context, user: str, limit: Limit = 50, cursor: Cursor = None,
              wide: Wide = False) -> None:
    """List USER's jobs, newest first (to fit: session, epochs left out first)."""
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/jobs", params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "session", "status", "steps", "epochs", "last loss"),
              lambda j: (j["id"], j["session_id"], j["status"],
                         f"{j['progress']['step']}/{j['progress']['total_steps']}",
                         f"{len(j['checkpoint_ids'])}/{j['epochs']}",
                         loss((j["metrics"].get("epoch_loss") or [None])[-1])),
              drop=("session", "epochs"))
