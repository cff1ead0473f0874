"""Training jobs: epochs over a dataset on the server, progress, SSE, cancel, conflicts, charts."""

from __future__ import annotations

import io
import math
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from httpx_sse import connect_sse

import models
from app.store.blobs import StoreUnavailable
from tests.helpers import LiveServer, assert_problem, backend_settings, new_session, upload

TERMINAL = ("succeeded", "failed", "cancelled")
# This module's servers send a progress event at every move (tests/conftest.py reads it).
SERVER_SETTINGS = {"event_interval_seconds": 0.0}
PROBE = np.random.default_rng(99).random((16, 28, 28), dtype=np.float32)


def learnable(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Digit-sized images whose class is the brightest pair of columns: quick to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = rng.random((n, 28, 28), dtype=np.float32) * 0.6
    for c in range(10):
        x[labels == c, :, 2 * c + 4:2 * c + 6] += 0.4
    return {"x": x, "y": np.eye(10, dtype=np.float32)[labels]}


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def new_dataset(client: httpx.Client, user: str, arrays: dict[str, np.ndarray]) -> str:
    r = client.post(f"/v1/users/{user}/datasets", files={"file": ("d.npz", npz(**arrays))},
                    data={"name": "train"})
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def start_job(client: httpx.Client, sid: str, dataset_id: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/v1/sessions/{sid}/jobs", json={"dataset_id": dataset_id, **body})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    return job  # type: ignore[no-any-return]


def wait_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The job's final state: the `end` event of its stream (no polling, no time bound but
    the client's own read timeout)."""
    events = sse_events(client, job_id)
    assert events and events[-1][0] == "end", events
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job == events[-1][1]  # the stream's last word is the job's final state
    return job  # type: ignore[no-any-return]


def wait_running(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and job["progress"]["step"] > 0:
            return job  # type: ignore[no-any-return]
        assert job["status"] not in TERMINAL, f"job ended before it was seen running: {job}"
        assert time.monotonic() < deadline, f"job not running: {job}"
        time.sleep(0.02)


def infer(client: httpx.Client, sid: str, x: np.ndarray = PROBE) -> list[Any]:
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x.tolist()}})
    assert r.status_code == 200, r.text
    return r.json()["outputs"]["output"]  # type: ignore[no-any-return]


def svg_root(r: httpx.Response) -> ET.Element:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def sse_events(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a job's text/event-stream to its end: [(event, data)]."""
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", timeout=60) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(e.event, orjson.loads(e.data)) for e in source.iter_sse()]


@pytest.fixture(scope="module")
def small_ds(client: httpx.Client) -> str:
    """200 examples for user "jo"."""
    return new_dataset(client, "jo", learnable(200))


@pytest.fixture(scope="module")
def big_ds(client: httpx.Client) -> str:
    """4000 examples for user "kim": batch 2 makes an epoch last about a second."""
    return new_dataset(client, "kim", learnable(4000, seed=1))


def test_job_runs_epochs_and_saves_a_checkpoint_after_each(
        client: httpx.Client, mlp_id: str, small_ds: str) -> None:
    sid = new_session(client, "jo", mlp_id)
    before = infer(client, sid)
    job = start_job(client, sid, small_ds, epochs=4, batch_size=32, seed=3)
    assert job["status"] in ("queued", "running") and job["session_id"] == sid
    assert job["user_id"] == "jo" and job["epochs"] == 4 and job["batch_size"] == 32
    assert job["seed"] == 3 and job["shuffle"] is True
    per_epoch = math.ceil(200 / 32)  # the last partial batch of 8 is a step too
    assert job["progress"]["total_steps"] == 4 * per_epoch
    assert job["links"]["events"] == f"/v1/jobs/{job['id']}/events"

    done = wait_job(client, job["id"])
    assert done["status"] == "succeeded" and done["error"] is None, done
    assert done["progress"] == {"epoch": 4, "step": 4 * per_epoch, "total_steps": 4 * per_epoch}
    losses = done["metrics"]["epoch_loss"]
    assert len(losses) == 4 and all(isinstance(v, float) for v in losses)
    assert losses[-1] < losses[0] * 0.7, losses  # learnable data: the loss falls
    assert done["started_at"] and done["finished_at"] >= done["started_at"]

    assert len(done["checkpoint_ids"]) == 4
    ckpts = [client.get(f"/v1/checkpoints/{c}").json() for c in done["checkpoint_ids"]]
    assert [c["kind"] for c in ckpts] == ["epoch"] * 4
    assert [c["step"] for c in ckpts] == [per_epoch * (i + 1) for i in range(4)]
    assert [c["session_id"] for c in ckpts] == [sid] * 4
    assert ckpts[-1]["loss"] is not None

    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["steps"] == 4 * per_epoch and session["head_checkpoint_id"] == ckpts[-1]["id"]
    assert infer(client, sid) != before

    root = svg_root(client.get(f"/v1/jobs/{job['id']}/loss.svg"))
    assert job["id"] in "".join(root.itertext())
    raw = root.find(".//*[@id='raw']")  # one marker per epoch
    assert raw is not None and len(raw.findall(".//{http://www.w3.org/2000/svg}use")) == 4
    svg_root(client.get(f"/v1/sessions/{sid}/loss.svg"))
    listed = client.get("/v1/users/jo/jobs").json()["items"]
    assert job["id"] in [j["id"] for j in listed]


def test_job_starts_where_the_session_is(client: httpx.Client, mlp_id: str,
                                         small_ds: str) -> None:
    """Steps taken by hand before the job are kept (autosaved) and counted on."""
    sid = new_session(client, "jo", mlp_id)
    data = learnable(8, seed=5)
    for _ in range(3):
        r = client.post(f"/v1/sessions/{sid}/train",
                        json={"inputs": {k: v.tolist() for k, v in data.items()}})
        assert r.status_code == 200
    job = wait_job(client, start_job(client, sid, small_ds, epochs=1, batch_size=50)["id"])
    assert job["status"] == "succeeded"
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == 3 + 4
    ckpts = client.get("/v1/users/jo/checkpoints", params={"session_id": sid}).json()["items"]
    # The job saved where it started (its own kind: autosaves are pruned while it runs).
    assert sorted((k["kind"], k["step"]) for k in ckpts) == [("epoch", 7), ("job-start", 3)]
    assert [k["id"] for k in ckpts if k["kind"] == "epoch"] == job["checkpoint_ids"]


def test_fixed_batch_model_drops_the_remainder(client: httpx.Client) -> None:
    fixed_id = upload(client, models.build_cached("mlp", fixed_batch=8), "mlp-fixed8")
    sid = new_session(client, "lea", fixed_id)
    ds = new_dataset(client, "lea", learnable(100, seed=2))  # 12 full batches and 4 left over
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": ds, "epochs": 2, "batch_size": 10}), 422, "fixed batch of 8",
        "batch_size must be 8")
    job = start_job(client, sid, ds, epochs=2, batch_size=8, seed=1)
    assert job["progress"]["total_steps"] == 2 * (100 // 8)
    done = wait_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["step"] == 24 and len(done["checkpoint_ids"]) == 2
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == 24

    tiny = new_dataset(client, "lea", learnable(5, seed=2))
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": tiny, "epochs": 1, "batch_size": 8}), 422, "larger than the dataset")


def test_open_batch_runs_a_last_partial_batch(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "lea", mlp_id)
    ds = new_dataset(client, "lea", learnable(5, seed=2))
    done = wait_job(client, start_job(client, sid, ds, epochs=3, batch_size=8)["id"])
    assert done["status"] == "succeeded" and done["progress"]["total_steps"] == 3


def test_same_seed_same_weights_other_seed_other_weights(
        client: httpx.Client, mlp_id: str, small_ds: str) -> None:
    sids = [new_session(client, "jo", mlp_id) for _ in range(3)]
    jobs = [start_job(client, sid, small_ds, epochs=2, batch_size=16, seed=seed)["id"]
            for sid, seed in zip(sids, (7, 7, 8), strict=True)]
    for job_id in jobs:
        assert wait_job(client, job_id)["status"] == "succeeded"
    a, b, c = (infer(client, sid) for sid in sids)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unshuffled_jobs_ignore_the_seed(client: httpx.Client, mlp_id: str,
                                         small_ds: str) -> None:
    sids = [new_session(client, "jo", mlp_id) for _ in range(2)]
    for sid, seed in zip(sids, (1, 2), strict=True):
        job = start_job(client, sid, small_ds, epochs=1, batch_size=16, seed=seed, shuffle=False)
        assert wait_job(client, job["id"])["status"] == "succeeded"
    assert np.array_equal(infer(client, sids[0]), infer(client, sids[1]))


def test_events_stream_progress_then_one_end(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "mo", mlp_id)
    # 3,000 steps: with no least interval between events (SERVER_SETTINGS) progress is seen
    # part way even where they take a tenth of a second
    ds = new_dataset(client, "mo", learnable(2000, seed=4))
    job = start_job(client, sid, ds, epochs=3, batch_size=2, seed=1)
    events = sse_events(client, job["id"])
    names = [name for name, _ in events]
    assert names[-1] == "end" and names.count("end") == 1, names
    assert len(names) >= 2 and set(names[:-1]) == {"progress"}, names
    end = events[-1][1]
    assert end["status"] == "succeeded" and end["id"] == job["id"]
    assert len(end["metrics"]["epoch_loss"]) == 3 and len(end["checkpoint_ids"]) == 3
    steps = [data["progress"]["step"] for _, data in events]
    assert steps == sorted(steps) and steps[-1] == end["progress"]["total_steps"] == 3 * 1000
    assert any(0 < s < steps[-1] for s in steps), steps  # seen part way

    again = sse_events(client, job["id"])  # a finished job: just its end
    assert [n for n, _ in again] == ["end"] and again[0][1]["status"] == "succeeded"


def test_while_running_progress_infer_and_conflicts_then_cancel(
        client: httpx.Client, mlp_id: str, big_ds: str) -> None:
    sid = new_session(client, "kim", mlp_id)
    before = infer(client, sid)
    job = start_job(client, sid, big_ds, epochs=20, batch_size=2, seed=5)
    running = wait_running(client, job["id"])
    assert running["progress"]["total_steps"] == 20 * 2000
    assert 0 < running["progress"]["step"] < 20 * 2000 and running["progress"]["epoch"] >= 1

    one = learnable(2, seed=9)
    r = client.post(f"/v1/sessions/{sid}/train",
                    json={"inputs": {k: v.tolist() for k, v in one.items()}})
    assert_problem(r, 409, job["id"])
    oip = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32",
                       "data": v.ravel().tolist()} for k, v in one.items()]}
    r = client.post(f"/v1/sessions/{sid}/v2/models/train/infer", json=oip)
    assert r.status_code == 409, r.text
    assert job["id"] in r.text
    started = time.monotonic()
    assert len(infer(client, sid)) == len(PROBE)  # infer works meanwhile, promptly
    assert time.monotonic() - started < 5  # not after the job (15 s or more)
    r = client.post(f"/v1/sessions/{sid}/v2/models/infer/infer", json={"inputs": [
        {"name": "x", "shape": [1, 28, 28], "datatype": "FP32", "data": PROBE[0].ravel().tolist()}
    ]})
    assert r.status_code == 200, r.text
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": big_ds, "epochs": 1, "batch_size": 8}), 409, job["id"])
    assert_problem(client.delete(f"/v1/sessions/{sid}"), 409, job["id"])

    later = client.get(f"/v1/jobs/{job['id']}").json()
    assert later["status"] == "running"
    assert later["progress"]["step"] >= running["progress"]["step"]
    assert job["id"] in [j["id"] for j in client.get("/v1/users/kim/jobs").json()["items"]]

    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202, r.text
    done = wait_job(client, job["id"])
    assert done["status"] == "cancelled" and done["finished_at"]
    assert done["progress"]["step"] > 0
    steps = client.get(f"/v1/sessions/{sid}").json()["steps"]
    assert steps == done["progress"]["step"] > 0  # the session keeps what it learned
    assert infer(client, sid) != before
    r = client.post(f"/v1/sessions/{sid}/train",
                    json={"inputs": {k: v.tolist() for k, v in one.items()}})
    assert r.status_code == 200 and r.json()["step"] == steps + 1  # train is open again
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def test_concurrent_creates_start_one_job_per_session(
        client: httpx.Client, server: LiveServer, mlp_id: str, big_ds: str) -> None:
    sid = new_session(client, "kim", mlp_id)

    def create(_: int) -> int:
        r = httpx.post(f"{server.url}/v1/sessions/{sid}/jobs", timeout=60,
                       json={"dataset_id": big_ds, "epochs": 50, "batch_size": 2})
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(create, range(8)))
    assert codes == [202] + [409] * 7
    mine = [j for j in client.get("/v1/users/kim/jobs").json()["items"]
            if j["session_id"] == sid]
    assert len(mine) == 1
    client.post(f"/v1/jobs/{mine[0]['id']}/cancel")
    assert wait_job(client, mine[0]["id"])["status"] == "cancelled"


def test_cancel_ends_a_queued_job_at_once(tmp_path: Path, s3_endpoint: str,
                                          mlp_bytes: bytes) -> None:
    """With every worker busy a job waits "queued"; cancelling it does not wait for a worker."""
    with backend_settings("sqlite-local", tmp_path, s3_endpoint, job_workers=1) as settings:
        live = LiveServer(settings).start()
        try:
            with httpx.Client(base_url=live.url, timeout=60) as c:
                model_id = upload(c, mlp_bytes, "mlp")
                ds = new_dataset(c, "uma", learnable(2000, seed=1))
                busy = start_job(c, new_session(c, "uma", model_id), ds, epochs=50, batch_size=2)
                wait_running(c, busy["id"])
                waiting = start_job(c, new_session(c, "uma", model_id), ds, epochs=1,
                                    batch_size=2)
                assert c.get(f"/v1/jobs/{waiting['id']}").json()["status"] == "queued"
                r = c.post(f"/v1/jobs/{waiting['id']}/cancel")
                assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
                events = sse_events(c, waiting["id"])
                assert [n for n, _ in events] == ["end"]
                assert events[0][1]["status"] == "cancelled"
                assert events[0][1]["progress"]["step"] == 0
                assert c.get(f"/v1/jobs/{busy['id']}").json()["status"] == "running"
                c.post(f"/v1/jobs/{busy['id']}/cancel")
                assert wait_job(c, busy["id"])["status"] == "cancelled"
                # The freed worker picks the queued job up, finds it cancelled, lets it go.
                deadline = time.monotonic() + 60
                while live.ctx.jobs.state(waiting["id"]) is not None:
                    assert time.monotonic() < deadline, "the queued job was never picked up"
                    time.sleep(0.02)
                after = c.get(f"/v1/jobs/{waiting['id']}").json()
                assert after["status"] == "cancelled" and after["started_at"] is None
                assert c.get(f"/v1/sessions/{waiting['session_id']}").json()["steps"] == 0
        finally:
            live.stop()


def test_a_diverging_job_reports_null_losses(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "nia", mlp_id)
    data = learnable(32, seed=6)
    data["x"] = data["x"] * np.float32(1e30)
    ds = new_dataset(client, "nia", data)
    done = wait_job(client, start_job(client, sid, ds, epochs=2, batch_size=8)["id"])
    assert done["status"] == "succeeded", done
    assert done["metrics"]["epoch_loss"][-1] is None  # NaN is no JSON number
    svg_root(client.get(f"/v1/jobs/{done['id']}/loss.svg"))


def test_unknown_job_is_404(client: httpx.Client) -> None:
    for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel"),
                         ("GET", "/loss.svg")):
        assert_problem(client.request(method, f"/v1/jobs/job_nope{path}"), 404, "job_nope")
    assert client.get("/v1/users/nobody/jobs").json()["items"] == []


def test_job_request_validation(client: httpx.Client, mlp_id: str, small_ds: str) -> None:
    sid = new_session(client, "jo", mlp_id)
    for body in ({"epochs": 0, "batch_size": 8}, {"epochs": 1, "batch_size": 0},
                 {"epochs": 1}, {"epochs": 1, "batch_size": 8, "seed": -1}):
        r = client.post(f"/v1/sessions/{sid}/jobs", json={"dataset_id": small_ds, **body})
        assert r.status_code == 422, (body, r.text)
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": "ds_nope", "epochs": 1, "batch_size": 8}), 404, "ds_nope")
    assert_problem(client.post("/v1/sessions/ses_nope/jobs", json={
        "dataset_id": small_ds, "epochs": 1, "batch_size": 8}), 404, "ses_nope")
    assert [j for j in client.get("/v1/users/jo/jobs").json()["items"]
            if j["session_id"] == sid] == []


def test_a_failed_epoch_checkpoint_fails_the_job_and_keeps_only_durable_epochs(
        server: LiveServer, client: httpx.Client, mlp_id: str, small_ds: str) -> None:
    # Epoch checkpoints are stored while the next epoch trains; the third write fails here
    # (fault injected into the store object: the outage tests stop real stores elsewhere).
    store = server.ctx.store
    real_put, puts = store.put, []

    def failing_put(key: str, data: bytes) -> None:
        puts.append(key)
        if len(puts) == 3:
            raise StoreUnavailable("injected: the store stopped answering")
        real_put(key, data)

    sid = new_session(client, "jo", mlp_id)
    store.put = failing_put
    try:
        done = wait_job(client, start_job(client, sid, small_ds, epochs=5, batch_size=32,
                                          seed=1)["id"])
    finally:
        del store.put  # back to the class's method
    assert done["status"] == "failed" and "injected" in done["error"], done
    assert len(done["checkpoint_ids"]) == 2  # epochs 1 and 2: stored and recorded
    assert len(done["metrics"]["epoch_loss"]) == 2
    for ckpt_id in done["checkpoint_ids"]:
        r = client.get(f"/v1/checkpoints/{ckpt_id}/file")
        assert r.status_code == 200 and len(r.content) > 0
    assert train_one(client, sid).status_code == 200  # the session is fine, and free again


def train_one(client: httpx.Client, sid: str) -> httpx.Response:
    x, y = learnable(4, seed=9).values()
    return client.post(f"/v1/sessions/{sid}/train",
                       json={"inputs": {"x": x.tolist(), "y": y.tolist()}})
