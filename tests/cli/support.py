"""Helpers of the command line tests: run `fleetlite` in-process against a live server."""

from __future__ import annotations

import re

from typer.testing import CliRunner, Result

from app.cli import app
from tests.helpers import LiveServer

USER = "cli-user"


def cli(server: LiveServer, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run `fleetlite --url <server> args...` in-process."""
    return CliRunner().invoke(app, ["--url", server.url, *args], env=env)


def ok(result: Result) -> Result:
    """Assert exit code 0 and return the result."""
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def field(text: str, key: str) -> str:
    """The value of a `key   value` line of the human output."""
    found = re.search(rf"^{re.escape(key)}\s+(\S+)", text, re.M)
    assert found, (key, text)
    return found.group(1)
