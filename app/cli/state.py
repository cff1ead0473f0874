"""What the global options leave for every command."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from app.cli.api import Api


@dataclass
class State:
    """The API client and the output mode chosen by the global options."""

    api: Api
    as_json: bool


def api(ctx: typer.Context) -> Api:
    """The API client of this invocation."""
    state: State = ctx.obj
    return state.api
