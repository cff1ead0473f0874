"""End-to-end tests run the service as real processes; none outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_restart import ServerProcess


@pytest.fixture(autouse=True)
def _no_server_left_behind() -> Iterator[None]:
    """A test that fails before it stops its server would leave it running (and holding a
    port, a database and CPU) for the rest of the suite: killed here, whatever happened."""
    yield
    while ServerProcess.started:
        ServerProcess.started.pop().kill_if_running()
