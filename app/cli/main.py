"""The `fleetlite` command: global options and the command groups."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from app.cli.api import Api
from app.cli.checkpoints import checkpoints_app
from app.cli.convert import convert
from app.cli.fleets import devices, fleets_app
from app.cli.groups import Typer
from app.cli.jobs import jobs_app
from app.cli.output import ALL_COLUMNS
from app.cli.privacy import privacy_app
from app.cli.resources import datasets_app, models_app, sessions_app
from app.cli.state import TOKEN_WORDS, State

DEFAULT_URL = "http://127.0.0.1:8000"

app = Typer(name="fleetlite", pretty_exceptions_show_locals=False,
            help="Command line for the fleetlite API: models, sessions, datasets, "
                 "training jobs, checkpoints and fleets.")
app.add_typer(models_app, name="models")
app.add_typer(sessions_app, name="sessions")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(fleets_app, name="fleets")
app.add_typer(privacy_app, name="privacy")
models_app.command("convert")(convert)
app.command("devices")(devices)


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="FLEETLITE_URL", help="Base URL of the API.")]
    = DEFAULT_URL,
    token: Annotated[str | None, typer.Option(
        envvar="FLEETLITE_TOKEN", show_default=False,
        help="Sent as Authorization: Bearer. Commands the CLI suggests pass "
             '--token "$FLEETLITE_TOKEN", never the token.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON answers.")] = False,
) -> None:
    """Global options, read before any command."""
    ALL_COLUMNS.set(False)  # a list's --wide sets it; in-process runs share the thread
    client = Api(url, token)
    ctx.call_on_close(client.close)
    repeat = [] if url == DEFAULT_URL else ["--url", shlex.quote(url)]
    if token:
        repeat.append(TOKEN_WORDS)
    # by name: typer bundles its own click, whose ParameterSource is not click's
    on_command_line = getattr(ctx.get_parameter_source("token"), "name", "") == "COMMANDLINE"
    ctx.obj = State(api=client, as_json=as_json, options=repeat,
                    token_on_command_line=bool(token) and on_command_line)


def main() -> None:
    """Entry point of the `fleetlite` script."""
    app(prog_name="fleetlite")
