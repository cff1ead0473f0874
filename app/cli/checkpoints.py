"""`checkpoints`: list, create from a session, download with a sha256 check."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.api import fail, seg
from app.cli.groups import Typer
from app.cli.output import console, fields, show, size, when
from app.cli.resources import Cursor, Limit, Wide, page_params, show_page
from app.cli.state import api

checkpoints_app = Typer(help="Checkpoint files written by sessions.")


def render_checkpoint(c: dict[str, Any]) -> None:
    """A checkpoint."""
    fields([("checkpoint", c["id"]), ("user", c["user_id"]), ("model", c["model_id"]),
            ("session", c["session_id"]), ("step", c["step"]), ("loss", c.get("loss")),
            ("kind", c["kind"]), ("label", c["label"]), ("size", size(c["size_bytes"])),
            ("sha256", c["sha256"]), ("created", when(c["created_at"]))])


@checkpoints_app.command("list")
def checkpoints_list(
    ctx: typer.Context, user: str,
    session: Annotated[str | None, typer.Option("--session", help="Only this session's.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model's.")] = None,
    limit: Limit = 50, cursor: Cursor = None, wide: Wide = False,
) -> None:
    """List USER's checkpoints, newest first (to fit: created, size, session left out first)."""
    params = page_params(limit, cursor, session_id=session, model_id=model)
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/checkpoints", params=params)
    show_page(ctx, page, ("id", "session", "step", "kind", "label", "size", "created"),
              lambda c: (c["id"], c["session_id"], c["step"], c["kind"], c["label"],
                         size(c["size_bytes"]), when(c["created_at"])),
              drop=("created", "size", "session"))


@checkpoints_app.command("create")
def checkpoints_create(
    ctx: typer.Context, session_id: str,
    label: Annotated[str | None, typer.Option("--label", help="A name to find it by.")] = None,
) -> None:
    """Save the session's current weights (runs the model's save signature)."""
    body = {"label": label} if label else None
    show(ctx, api(ctx).json("POST", f"/v1/sessions/{seg(session_id)}/checkpoints", json=body),
         render_checkpoint)


@checkpoints_app.command("download")
def checkpoints_download(
    ctx: typer.Context, checkpoint_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", dir_okay=False,
                                                help="Default: <id>.ckpt")] = None,
) -> None:
    """Download a checkpoint file; fail, writing nothing, if its sha256 is not the recorded one."""
    client = api(ctx)
    meta = client.json("GET", f"/v1/checkpoints/{seg(checkpoint_id)}")
    out = output or Path(f"{checkpoint_id}.ckpt")
    part = out.with_name(out.name + ".part")
    digest = hashlib.sha256()
    try:
        with client.stream("GET", f"/v1/checkpoints/{seg(checkpoint_id)}/file") as response, \
                client.transport_errors(), part.open("wb") as fh:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                fh.write(chunk)
        if digest.hexdigest() != meta["sha256"]:
            fail(f"checksum mismatch for {checkpoint_id}: the server recorded sha256 "
                 f"{meta['sha256']} but the file downloaded has {digest.hexdigest()}; "
                 f"{out} was not written")
        part.replace(out)
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    finally:
        part.unlink(missing_ok=True)
    if ctx.obj.as_json:
        show(ctx, {**meta, "path": str(out)}, render_checkpoint)
    else:
        console().print(f"wrote {out} ({size(meta['size_bytes'])}, sha256 {meta['sha256']} "
                        "verified)", markup=False)
