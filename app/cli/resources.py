"""`models`, `sessions` and `datasets`: thin commands over the matching API routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from app import quiet
from app.cli.api import fail, seg
from app.cli.groups import Typer
from app.cli.output import (
    ALL_COLUMNS,
    err_console,
    fields,
    loss,
    print_json,
    show,
    size,
    table,
    when,
)
from app.cli.sample import datasets_sample
from app.cli.state import api, rerun

models_app = Typer(help="Base .tflite models.")
sessions_app = Typer(help="Users' live sessions on a base model.")
datasets_app = Typer(help="Users' .npz training data.")

ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]
Limit = Annotated[int, typer.Option(min=1, max=500, help="Items per page.")]
Cursor = Annotated[str | None, typer.Option(help="next_cursor of the previous page.")]


def _all_columns(wide: bool) -> bool:
    ALL_COLUMNS.set(wide)
    return wide


Wide = Annotated[bool, typer.Option(
    "--wide", callback=_all_columns,
    help="Every column, however wide (else columns are left out to fit the terminal).")]


def page_params(limit: int, cursor: str | None, **filters: str | None) -> dict[str, Any]:
    """Query parameters of a list call, without the unset ones."""
    params: dict[str, Any] = {"limit": limit, "cursor": cursor, **filters}
    return {k: v for k, v in params.items() if v is not None}


def show_page(ctx: typer.Context, page: dict[str, Any], columns: Sequence[str],
              row: Callable[[dict[str, Any]], Sequence[Any]], drop: Sequence[str] = ()) -> None:
    """Print one page of a list (leaving out the columns in drop, in that order, to fit),
    and on stderr the command for the next page, if any."""
    if ctx.obj.as_json:
        print_json(page)
        return
    table(columns, (row(item) for item in page["items"]), drop)
    if page.get("next_cursor"):
        err_console().print(f"more: {rerun(ctx, cursor=page['next_cursor'])}", markup=False,
                            soft_wrap=True)


def tensor(spec: dict[str, Any]) -> str:
    """`float32[-1,28,28]`."""
    return f"{spec['dtype']}[{','.join(str(d) for d in spec['shape'])}]"


def signature_line(sig: dict[str, Any]) -> str:
    """`x float32[-1,28,28], y float32[-1,10] -> loss float32[]`."""
    def side(specs: dict[str, Any]) -> str:
        return ", ".join(f"{name} {tensor(spec)}" for name, spec in specs.items()) or "()"
    return f"{side(sig['inputs'])} -> {side(sig['outputs'])}"


def render_model(m: dict[str, Any]) -> None:
    """A model with one line per signature."""
    fields([("model", m["id"]), ("name", m["name"]), ("size", size(m["size_bytes"])),
            ("sha256", m["sha256"]), ("created", when(m["created_at"]))])
    fields((f"  {key}", signature_line(sig)) for key, sig in sorted(m["signatures"].items()))


def render_session(s: dict[str, Any]) -> None:
    """A session."""
    fields([("session", s["id"]), ("user", s["user_id"]), ("model", s["model_id"]),
            ("steps", s["steps"]), ("last loss", loss(s["last_loss"])),
            ("checkpoint", s.get("head_checkpoint_id")), ("created", when(s["created_at"])),
            ("updated", when(s["updated_at"]))])


def render_dataset(d: dict[str, Any]) -> None:
    """A dataset with its arrays."""
    fields([("dataset", d["id"]), ("user", d["user_id"]), ("name", d["name"]),
            ("examples", d["num_examples"]), ("size", size(d["size_bytes"])),
            ("created", when(d["created_at"]))])
    fields((f"  {name}", tensor(spec)) for name, spec in d["arrays"].items())


@models_app.command("upload")
def models_upload(ctx: typer.Context, file: ExistingFile,
                  name: Annotated[str | None, typer.Option(help="Default: the file name.")] = None
                  ) -> None:
    """Upload a trainable .tflite model (the server smoke-runs every signature first)."""
    with file.open("rb") as fh:
        model = api(ctx).json("POST", "/v1/models", files={"file": (file.name, fh)},
                              data={"name": name or file.stem})
    show(ctx, model, render_model)


@models_app.command("list")
def models_list(ctx: typer.Context, limit: Limit = 50, cursor: Cursor = None,
                wide: Wide = False) -> None:
    """List base models, newest first (to fit: created, signatures, size left out first)."""
    page = api(ctx).json("GET", "/v1/models", params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "name", "size", "signatures", "created"),
              lambda m: (m["id"], m["name"], size(m["size_bytes"]),
                         ", ".join(sorted(m["signatures"])), when(m["created_at"])),
              drop=("created", "signatures", "size"))


@models_app.command("build")
def models_build(ctx: typer.Context,
                 name: Annotated[str, typer.Argument(help="mlp, head or cnn.")],
                 out: Annotated[Path, typer.Argument(dir_okay=False, writable=True)]) -> None:
    """Build a trainable model from models/ locally (imports TensorFlow; no server needed)."""
    import models as definitions

    if name not in definitions.NAMES:
        fail(f"unknown model {name!r}; choose one of: {', '.join(definitions.NAMES)}")
    with quiet.filtered_stderr():  # TensorFlow's import and converter noise
        out.write_bytes(definitions.build(name))
    built = {"name": name, "path": str(out), "size_bytes": out.stat().st_size}
    show(ctx, built, lambda b: typer.echo(f"wrote {b['path']} ({size(b['size_bytes'])})"))


@sessions_app.command("create")
def sessions_create(
    ctx: typer.Context, user: str,
    model: Annotated[str, typer.Option("--model", help="Base model id.")],
    checkpoint: Annotated[str | None, typer.Option("--checkpoint",
                                                   help="Start from this checkpoint.")] = None,
) -> None:
    """Start a session for USER on a model, optionally from a checkpoint."""
    body = {"model_id": model, **({"checkpoint_id": checkpoint} if checkpoint else {})}
    show(ctx, api(ctx).json("POST", f"/v1/users/{seg(user)}/sessions", json=body), render_session)


@sessions_app.command("list")
def sessions_list(ctx: typer.Context, user: str, limit: Limit = 50,
                  cursor: Cursor = None, wide: Wide = False) -> None:
    """List USER's sessions, newest first (to fit: updated, model left out first)."""
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/sessions",
                         params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "model", "steps", "last loss", "updated"),
              lambda s: (s["id"], s["model_id"], s["steps"], loss(s["last_loss"]),
                         when(s["updated_at"])), drop=("updated", "model"))


@sessions_app.command("show")
def sessions_show(ctx: typer.Context, session_id: str) -> None:
    """Show one session."""
    show(ctx, api(ctx).json("GET", f"/v1/sessions/{seg(session_id)}"), render_session)


@datasets_app.command("upload")
def datasets_upload(
    ctx: typer.Context, user: str, file: ExistingFile,
    name: Annotated[str | None, typer.Option(help="Default: the file name.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Check the arrays against this model's train signature now.")] = None,
) -> None:
    """Upload an .npz whose arrays are named after the train signature's inputs."""
    data = {"name": name or file.stem, **({"model_id": model} if model else {})}
    with file.open("rb") as fh:
        dataset = api(ctx).json("POST", f"/v1/users/{seg(user)}/datasets",
                                files={"file": (file.name, fh)}, data=data)
    show(ctx, dataset, render_dataset)


@datasets_app.command("list")
def datasets_list(ctx: typer.Context, user: str, limit: Limit = 50,
                  cursor: Cursor = None, wide: Wide = False) -> None:
    """List USER's datasets, newest first (to fit: size, arrays left out first)."""
    page = api(ctx).json("GET", f"/v1/users/{seg(user)}/datasets",
                         params=page_params(limit, cursor))
    show_page(ctx, page, ("id", "name", "examples", "arrays", "size"),
              lambda d: (d["id"], d["name"], d["num_examples"],
                         ", ".join(f"{k} {tensor(v)}" for k, v in d["arrays"].items()),
                         size(d["size_bytes"])), drop=("size", "arrays"))


datasets_app.command("sample")(datasets_sample)
