"""What the global options leave for every command, and the command lines printed as hints."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import typer

from app.cli.api import Api
from app.cli.output import err_console

PROG = "fleetlite"
TOKEN_WORDS = '--token "$FLEETLITE_TOKEN"'  # left for the shell to expand: never the token itself


@dataclass
class State:
    """The API client, the output mode and the global options a hint has to repeat."""

    api: Api
    as_json: bool
    options: list[str] = field(default_factory=list)  # already quoted for a POSIX shell
    token_on_command_line: bool = False
    token_noted: bool = False


def api(ctx: typer.Context) -> Api:
    """The API client of this invocation."""
    state: State = ctx.obj
    return state.api


def hint(ctx: typer.Context, *words: str) -> str:
    """A command line to run next, with this invocation's --url and --token (as a variable)."""
    state: State = ctx.obj
    if state.token_on_command_line and not state.token_noted:
        state.token_noted = True  # once per invocation, on stderr so stdout stays parseable
        err_console().print(f'note: the commands printed pass {TOKEN_WORDS} rather than the '
                            "token itself; export FLEETLITE_TOKEN=<your token> to run them",
                            markup=False)
    return " ".join([PROG, *state.options, *(shlex.quote(w) for w in words)])


def rerun(ctx: typer.Context, **changes: Any) -> str:
    """This very command line as a hint, with some of its parameters changed."""
    path: list[str] = []
    at: Any = ctx
    while at is not None and at.parent is not None:  # the root's name is the program's
        path.insert(0, at.info_name or "")
        at = at.parent
    for param in ctx.command.params:
        name = param.name or ""
        value = changes.get(name, ctx.params.get(name))
        if value is None or (name not in changes and value == param.default):
            continue
        if param.param_type_name == "argument":
            path.append(str(value))
        elif isinstance(value, bool):
            path.extend((param.opts if value else param.secondary_opts)[:1])
        else:
            path.extend([next((o for o in param.opts if o.startswith("--")), param.opts[0]),
                         str(value)])
    return hint(ctx, *path)
