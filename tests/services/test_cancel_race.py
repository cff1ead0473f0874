"""A cancel that meets its work just as a driver takes it from the queue has one writer of
the end state: the canceller while the work waits, the driver once it has taken it. (CI saw
the old race: the canceller wrote "cancelled" while the worker was starting the job, then
the job ran, so the event stream's end and the job's state disagreed.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.db.tables import JobRow
from app.services import lifecycle, sessions
from app.services.fleet import record
from tests.api.test_jobs_api import learnable, new_dataset, wait_job
from tests.fleets.support import digits, follow, start, upload_dataset
from tests.helpers import LiveServer, new_session, until

SERVER_SETTINGS = {"event_interval_seconds": 0.0, "job_workers": 1}


def _wait_taken(pieces: Any, key: str) -> None:
    until(lambda: (state := pieces.state(key)) is not None and state.taken,
          f"{key} was never taken by a driver", timeout=60)


@contextmanager
def _strand_held(server: LiveServer, sid: str) -> Iterator[threading.Event]:
    """The session's strand busy with a task that waits for the yielded event: a job's
    worker that claims the session waits there, after it took the job from the queue."""
    live = sessions.live(server.ctx, session_id=sid)
    release, entered = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(120)

    done = live.strand.submit(hold)
    assert entered.wait(30)
    try:
        yield release
    finally:
        release.set()
        done.result(timeout=30)


def test_a_job_cancelled_while_its_worker_takes_it_ends_once_by_its_worker(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    ds = new_dataset(client, "vera", learnable(64))
    sid = new_session(client, "vera", mlp_id)
    with _strand_held(server, sid) as release:
        r = client.post(f"/v1/sessions/{sid}/jobs",
                        json={"dataset_id": ds, "epochs": 50, "batch_size": 2})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        _wait_taken(server.ctx.jobs, job_id)
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel").json()
        # taken but not started: the worker, not the canceller, writes the end
        assert cancelled["status"] == "queued" and cancelled["finished_at"] is None
        release.set()
    job = wait_job(client, job_id)
    assert job["status"] == "cancelled" and job["finished_at"] is not None


def test_a_job_cancelled_while_queued_is_ended_by_the_canceller_and_never_started(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    ds = new_dataset(client, "vera", learnable(64))
    sid = new_session(client, "vera", mlp_id)
    other = new_session(client, "vera", mlp_id)
    with _strand_held(server, other):  # the one job worker is stuck on another session
        blocker = client.post(f"/v1/sessions/{other}/jobs",
                              json={"dataset_id": ds, "epochs": 1, "batch_size": 2}).json()
        _wait_taken(server.ctx.jobs, blocker["id"])
        queued = client.post(f"/v1/sessions/{sid}/jobs",
                             json={"dataset_id": ds, "epochs": 50, "batch_size": 2}).json()
        assert client.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    job = wait_job(client, queued["id"])
    assert job["status"] == "cancelled" and job["started_at"] is None
    assert wait_job(client, blocker["id"])["status"] == "succeeded"


def test_a_fleet_cancelled_while_a_worker_takes_it_ends_once_by_its_driver(
        server: LiveServer, client: httpx.Client, mlp_id: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ds = upload_dataset(client, "vera", digits(100))
    release, entered = threading.Event(), threading.Event()
    plan_of = record.plan_of

    def held(*args: Any, **kwargs: Any) -> Any:  # the driver, after take(), reads its plan
        entered.set()
        release.wait(120)
        return plan_of(*args, **kwargs)

    monkeypatch.setattr(record, "plan_of", held)
    try:
        fleet = start(client, "vera", model_id=mlp_id, dataset_id=ds, clients=4,
                      clients_per_round=2, rounds=50, batch_size=16, seed=3)
        assert entered.wait(60)
        assert server.ctx.fleets.state(fleet["id"]).taken
        cancelled = client.post(f"/v1/fleets/{fleet['id']}/cancel").json()
        assert cancelled["status"] == "queued"  # its driver writes the end, once
    finally:
        release.set()
    end = follow(client, fleet["id"])[-1][1]
    assert end["status"] == "cancelled"
    assert client.get(f"/v1/fleets/{fleet['id']}").json() == end


def test_a_cancel_that_read_the_row_before_the_work_ended_leaves_the_end_as_it_was(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    # The canceller read the job's row while it ran; the job ended and its driver let go of
    # it before the cancel reached the workers: there is no driver, and the end stays.
    ds = new_dataset(client, "vera", learnable(8))
    sid = new_session(client, "vera", mlp_id)
    job = client.post(f"/v1/sessions/{sid}/jobs",
                      json={"dataset_id": ds, "epochs": 1, "batch_size": 2}).json()
    ended = wait_job(client, job["id"])
    assert ended["status"] == "succeeded"
    lifecycle.cancel(server.ctx, server.ctx.jobs, JobRow,
                     SimpleNamespace(id=job["id"], status="running"))
    assert client.get(f"/v1/jobs/{job['id']}").json() == ended
