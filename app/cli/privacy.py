"""`fleetlite privacy ...`: the privacy planner."""

from __future__ import annotations

from app.cli.groups import Typer

privacy_app = Typer(help="Differential privacy: epsilon of a schedule, or the noise it needs.")
