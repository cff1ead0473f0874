"""Apply the Alembic migrations: ``python -m app.db.migrate`` (same as ``alembic upgrade head``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[2]


def upgrade(database_url: str | None = None) -> None:
    """Bring the database named by the URL (or the settings) to the newest revision."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["skip_logging"] = True
    if database_url:
        cfg.attributes["database_url"] = database_url
    command.upgrade(cfg, "head")


if __name__ == "__main__":
    upgrade()
