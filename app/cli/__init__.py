"""fleetlite: a command line for the common path, talking to the API over HTTP."""

from app.cli.main import app, main

__all__ = ["app", "main"]
