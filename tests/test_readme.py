"""The README is the user's door: its configuration table must match the settings."""

from __future__ import annotations

import re
from pathlib import Path

from app.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(FLEETLITE_[A-Z0-9_]+)` \| ([^|]+) \|", README, re.M))
    fields = {f"FLEETLITE_{name.upper()}": f for name, f in Settings.model_fields.items()}
    assert set(rows) == set(fields)
    for var, field in fields.items():
        shown = rows[var].strip().strip("`")
        default = field.default
        if default is None:
            assert shown == "unset", var
        elif isinstance(default, float) and default.is_integer():
            assert shown == str(int(default)), var
        else:
            assert shown == str(default), var


def test_readme_keeps_its_two_commands() -> None:
    assert "make run" in README and "make test" in README
