"""fleetlite serves from one process, and refuses, saying why, to run as several."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.single import WHY, requested_workers
from tests.helpers import LiveServer, backend_settings

pytestmark = pytest.mark.slow


def test_requested_workers_reads_uvicorn_flags_and_web_concurrency() -> None:
    assert requested_workers(["uvicorn", "--factory", "x"], {}) == 1
    assert requested_workers(["uvicorn", "--workers", "4"], {}) == 4
    assert requested_workers(["uvicorn", "--workers=2"], {}) == 2
    assert requested_workers(["uvicorn"], {"WEB_CONCURRENCY": "3"}) == 3
    assert requested_workers(["uvicorn", "--workers", "1"], {"WEB_CONCURRENCY": "3"}) == 1


def test_uvicorn_with_two_workers_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "FLEETLITE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
           "FLEETLITE_STORE_URL": str(tmp_path / "store"),
           "FLEETLITE_WORK_DIR": str(tmp_path / "tmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--workers", "2",
         "--host", "127.0.0.1", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120)
    assert "fleetlite runs in one process" in proc.stderr, proc.stderr[-2000:]
    assert "asked for 2 workers" in proc.stderr
    assert "Application startup complete" not in proc.stderr  # no worker ever served


def test_second_server_on_the_same_work_dir_fails_at_start(tmp_path: Path,
                                                           s3_endpoint: str) -> None:
    with backend_settings("sqlite-local", tmp_path, s3_endpoint) as settings:
        first = LiveServer(settings).start()
        try:
            second = LiveServer(settings)
            with pytest.raises(RuntimeError, match="failed to start"):
                second.start()
        finally:
            first.stop()
        third = LiveServer(settings).start()  # the lock went with the first server
        third.stop()
    assert WHY.startswith("fleetlite runs in one process")
