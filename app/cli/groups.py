"""Typer apps whose --help shows flags as flags and arguments in capitals.

typer's rich help prints a type after every option, `--json <bool>` too, as if a flag took a
value (its plain help leaves flags bare), and arguments as `{session_id}` where the docstrings
say SESSION_ID. These classes set the metavars that make both read as they should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _tidy(params: Iterable[Any]) -> None:
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""  # the rich help prints the metavar, when set, as the type
        elif isinstance(param, TyperArgument) and param.name:
            param.metavar = param.name.upper()


class FlagCommand(TyperCommand):
    """A command whose help shows flags bare and arguments in capitals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self.params)  # now, so that errors name arguments as the help does

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The help, --help itself (made on demand) included."""
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)


class FlagGroup(TyperGroup):
    """A group whose help shows flags bare."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy(self.params)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The help, --help itself (made on demand) included."""
        _tidy(self.get_params(ctx))
        super().format_help(ctx, formatter)


class Typer(typer.Typer):
    """typer.Typer with FlagGroup and FlagCommand as its defaults, and no_args_is_help."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"cls": FlagGroup, "no_args_is_help": True, **kwargs})

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Register a command; a FlagCommand unless cls says otherwise."""
        return super().command(*args, **{"cls": FlagCommand, **kwargs})
