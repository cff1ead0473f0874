"""The `fleetlite` command: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.api import Api
from app.cli.checkpoints import checkpoints_app
from app.cli.jobs import jobs_app
from app.cli.resources import datasets_app, models_app, sessions_app
from app.cli.state import State

app = typer.Typer(name="fleetlite", no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Command line for the fleetlite API: models, sessions, datasets, "
                       "training jobs and checkpoints.")
app.add_typer(models_app, name="models")
app.add_typer(sessions_app, name="sessions")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(checkpoints_app, name="checkpoints")


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="FLEETLITE_URL", help="Base URL of the API.")]
    = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="FLEETLITE_TOKEN", show_default=False,
                                              help="Sent as Authorization: Bearer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answers.")] = False,
) -> None:
    """Global options, read before any command."""
    client = Api(url, token)
    ctx.call_on_close(client.close)
    ctx.obj = State(api=client, as_json=as_json)


def main() -> None:
    """Entry point of the `fleetlite` script."""
    app(prog_name="fleetlite")
