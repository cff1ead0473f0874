"""Crash durability: SIGKILL while sessions train, checkpoints are taken and a job runs.

After each restart every session is exactly at its head checkpoint (steps, and weights
bit-equal to that file restored in a fresh interpreter), every checkpoint row points at a
blob with its sha256, no blob or scratch file is left without a row, and the job resumes
and finishes. A put killed halfway never shows a torn blob, on either store.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.tables import CheckpointRow, DatasetRow, JobRow, ModelRow, SessionRow, new_id
from app.runtime.interpreter import LiteSession
from app.store.blobs import BlobStore, open_store
from tests.api.test_jobs_api import learnable, new_dataset, start_job, wait_job, wait_running
from tests.e2e.test_restart import ROOT, ServerProcess, env_for
from tests.helpers import BACKENDS, backend_settings, make_bucket, new_session, upload

pytestmark = pytest.mark.slow

ROUNDS = 3
RNG = np.random.default_rng(7)
X = RNG.random((8, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)]
TRAIN = {"inputs": {"x": X.tolist(), "y": Y.tolist()}}
N, BATCH, EPOCHS = 4000, 2, 10  # 20000 job steps: still running when the kill comes


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
             ) -> Iterator[Settings]:
    with backend_settings(request.param, tmp_path, s3_endpoint, autosave_seconds=0.5,
                          flush_seconds=0.25, keep_autosaves=2, job_workers=1) as s:
        yield s


def store_of(settings: Settings) -> BlobStore:
    return open_store(settings.store_url, endpoint=settings.s3_endpoint,
                      access_key_id=settings.s3_access_key_id,
                      secret_access_key=settings.s3_secret_access_key)


@dataclass
class Trainer:
    """A client that trains one session and now and then checkpoints it by hand."""

    sid: str
    user: str
    answered_step: int = 0  # the step of the last train call that was answered
    saves: list[tuple[str, int]] = field(default_factory=list)  # (id, step) answered 201
    errors: list[str] = field(default_factory=list)

    def run(self, url: str, stop: threading.Event, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=30) as c:
            try:
                while not stop.is_set():
                    if rng.random() < 0.08:
                        r = c.post(f"/v1/sessions/{self.sid}/checkpoints", json={"label": "hand"})
                        if r.status_code == 201:
                            self.saves.append((r.json()["id"], r.json()["step"]))
                    else:
                        r = c.post(f"/v1/sessions/{self.sid}/train", json=TRAIN)
                        if r.status_code == 200:
                            self.answered_step = r.json()["step"]
                    if r.status_code not in (200, 201):
                        self.errors.append(f"{r.status_code} {r.text}")
            except httpx.HTTPError:
                return  # the server died under this call: it was never answered


def expected_infer(mlp_bytes: bytes, checkpoint: bytes | None, tmp: Path) -> np.ndarray:
    """What a fresh interpreter answers from that checkpoint file (None: initial weights)."""
    lite = LiteSession(mlp_bytes)
    if checkpoint is not None:
        path = tmp / f"ref-{hashlib.sha256(checkpoint).hexdigest()[:12]}.ckpt"
        path.write_bytes(checkpoint)
        lite.restore(path)
        path.unlink()
    return lite.run("infer", {"x": X})["output"]  # type: ignore[no-any-return]


def assert_at_head(c: httpx.Client, sid: str, mlp_bytes: bytes, tmp: Path) -> dict:  # type: ignore[type-arg]
    """The session's steps and weights are exactly those of its head checkpoint."""
    session = c.get(f"/v1/sessions/{sid}").json()
    head_id = session["head_checkpoint_id"]
    head, data = None, None
    if head_id is not None:
        head = c.get(f"/v1/checkpoints/{head_id}").json()
        data = c.get(f"/v1/checkpoints/{head_id}/file").content
        assert hashlib.sha256(data).hexdigest() == head["sha256"]
        saved = c.get(f"/v1/users/{session['user_id']}/checkpoints",
                      params={"session_id": sid, "limit": 500}).json()["items"]
        # No save with more steps was dropped. (A job's epoch checkpoint written after a
        # save at a later step has a newer id and fewer steps: it must not be the head.)
        assert head["step"] == max(k["step"] for k in saved), (saved[:3], head)
    step = head["step"] if head else 0
    assert session["steps"] == step, (session, head)
    r = c.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X.tolist()}})
    assert r.status_code == 200, r.text
    got = np.array(r.json()["outputs"]["output"], dtype=np.float32)
    assert np.array_equal(got, expected_infer(mlp_bytes, data, tmp)), sid
    again = c.get(f"/v1/sessions/{sid}").json()  # loaded now: the live counters agree
    assert again["steps"] == step and again["head_checkpoint_id"] == head_id
    return head or {"step": 0}


def assert_rows_match_blobs(settings: Settings) -> int:
    """Every row (checkpoint, model, dataset) has its whole blob, every blob a row; no
    scratch files left. Returns the number of checkpoint rows."""
    engine = create_engine(settings.database_url)
    try:
        with Session(engine) as db:
            ckpts = list(db.scalars(select(CheckpointRow)))
            others = [*db.scalars(select(ModelRow)), *db.scalars(select(DatasetRow))]
            heads = {h for h in db.scalars(select(SessionRow.head_checkpoint_id)) if h}
            job_ckpts = {i for ids in db.scalars(select(JobRow.checkpoint_ids)) for i in ids}
    finally:
        engine.dispose()
    store = store_of(settings)
    for row in [*ckpts, *others]:
        data = store.get(row.blob_key)
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (row.sha256, row.size_bytes)
    for ck in ckpts:
        assert ck.blob_key == f"users/{ck.user_id}/checkpoints/{ck.id}.ckpt"
    ids = {ck.id for ck in ckpts}
    assert heads <= ids and job_ckpts <= ids
    blobs = set(store.keys("users/")) | set(store.keys("models/"))
    assert blobs == {row.blob_key for row in [*ckpts, *others]}  # no orphan, none missing
    assert list(Path(settings.work_dir).glob("*.ckpt")) == []
    if not settings.store_url.startswith("s3://"):  # no torn staging file of a local put
        assert [p for p in Path(settings.store_url).rglob("*#*")] == []
    return len(ckpts)


def leave_what_a_crash_between_blob_and_row_leaves(settings: Settings) -> None:
    """A blob whose row was never committed, scratch files, a local put's staging file."""
    store_of(settings).put(f"users/ann/checkpoints/{new_id('ckpt')}.ckpt", b"never a row")
    work = Path(settings.work_dir)
    (work / f"{new_id('ckpt')}.ckpt").write_bytes(b"save was running")
    (work / f"restore-{new_id('tmp')}.ckpt").write_bytes(b"restore was running")
    if not settings.store_url.startswith("s3://"):
        folder = Path(settings.store_url) / "users" / "ann" / "checkpoints"
        (folder / f"{new_id('ckpt')}.ckpt#1").write_bytes(b"half a put")


def test_sigkill_mid_training_restarts_every_session_at_its_last_checkpoint(
        settings: Settings, mlp_bytes: bytes, tmp_path: Path) -> None:
    env = env_for(settings)
    log = tmp_path / "server.log"
    rng = random.Random(1)
    server = ServerProcess(env, log)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        model_id = upload(c, mlp_bytes, "mlp")
        dataset_id = new_dataset(c, "jo", learnable(N, seed=3))
        trainers = [Trainer(new_session(c, user, model_id), user)
                    for user in ("ann", "ann", "ben", "ben")]
    kills_mid_job, kinds_seen = 0, set()
    for round_no in range(ROUNDS):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            job_sid = new_session(c, "jo", model_id)
            job = start_job(c, job_sid, dataset_id, epochs=EPOCHS, batch_size=BATCH, seed=round_no)
            wait_running(c, job["id"])
        stop = threading.Event()
        threads = [threading.Thread(target=t.run, args=(server.url, stop, round_no * 10 + i))
                   for i, t in enumerate(trainers)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        assert not server.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(30)
        for tr in trainers:
            assert tr.errors == [] and tr.answered_step > 0, (tr.sid, tr.errors[:3])
        engine = create_engine(settings.database_url)
        with Session(engine) as db:
            killed_running = db.scalar(select(JobRow.status).where(
                JobRow.id == job["id"])) == "running"
        engine.dispose()
        kills_mid_job += killed_running
        if round_no == 0:
            leave_what_a_crash_between_blob_and_row_leaves(settings)

        server = ServerProcess(env, log)
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for tr in trainers:
                head = assert_at_head(c, tr.sid, mlp_bytes, tmp_path)
                kinds_seen.add(head.get("kind"))
                # A save the client was told about is never lost; at most one train call
                # (applied, its answer cut off by the kill) is ahead of what it was told.
                told = max((step for _, step in tr.saves), default=0)
                assert told <= head["step"] <= tr.answered_step + 1, (tr, head)
                tr.saves.clear()
            back = c.get(f"/v1/jobs/{job['id']}").json()
            if killed_running:
                assert back["status"] in ("queued", "running", "succeeded"), back
            done = wait_job(c, job["id"])
            total = EPOCHS * (N // BATCH)
            assert done["status"] == "succeeded" and done["progress"]["step"] == total, done
            epochs = [c.get(f"/v1/checkpoints/{i}").json() for i in done["checkpoint_ids"]]
            assert [k["step"] for k in epochs] == [N // BATCH * (e + 1) for e in range(EPOCHS)]
            head = assert_at_head(c, job_sid, mlp_bytes, tmp_path)
            assert head["id"] == done["checkpoint_ids"][-1] and head["step"] == total
            kinds_seen.add("epoch")
            assert_rows_match_blobs(settings)  # quiet now: no call or job in flight
    assert server.stop(signal.SIGTERM)
    assert kills_mid_job >= 1, "the job was never running when the server was killed"
    assert "auto" in kinds_seen, kinds_seen  # sessions came back at autosaves, not just by hand


PUTTER = """
import hashlib, os, sys
from app.store.blobs import open_store
store = open_store(sys.argv[1], endpoint=sys.argv[2] or None, access_key_id="test",
                   secret_access_key="test")
base, i = os.urandom(int(sys.argv[3])), 0
while True:
    body = i.to_bytes(8, "big") + base
    store.put(f"users/u/checkpoints/c{i % 4}.ckpt", body + hashlib.sha256(body).digest())
    i += 1
    if i == 4:
        print("go", flush=True)
"""


def start_putter(url: str, endpoint: str, size: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", PUTTER, url, endpoint, str(size)],
                            cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
    return proc


def assert_blobs_whole(store: BlobStore, size: int) -> None:
    keys = store.keys("users/")
    assert sorted(keys) == [f"users/u/checkpoints/c{i}.ckpt" for i in range(4)]
    for key in keys:
        data = store.get(key)
        assert len(data) == 8 + size + 32, key
        assert hashlib.sha256(data[:-32]).digest() == data[-32:], key


def test_local_put_killed_midway_leaves_no_torn_blob(tmp_path: Path) -> None:
    root, size = tmp_path / "store", 32 * 1024 * 1024
    folder = root / "users" / "u" / "checkpoints"
    torn = 0
    for _ in range(3):
        proc = start_putter(str(root), "", size)
        deadline = time.monotonic() + 20
        while not any("#" in name for name in _listdir(folder)):  # a put is being written
            assert time.monotonic() < deadline and proc.poll() is None
        proc.kill()
        proc.wait()
        staging = [p for p in folder.iterdir() if "#" in p.name]
        torn += sum(1 for p in staging if p.stat().st_size < 8 + size + 32)
        store = open_store(str(root))
        assert_blobs_whole(store, size)  # the staging file is never a blob
        assert store.remove_partial_writes() == len(staging)
        assert [p for p in root.rglob("*#*")] == []
        assert_blobs_whole(store, size)
    assert torn >= 1  # at least one kill really landed in the middle of a write


def _listdir(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except FileNotFoundError:
        return []


def test_s3_put_killed_midway_leaves_no_torn_blob(s3_endpoint: str) -> None:
    url, size = f"s3://{make_bucket(s3_endpoint)}/fleet", 6 * 1024 * 1024  # multipart
    store = open_store(url, endpoint=s3_endpoint, access_key_id="test",
                       secret_access_key="test")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    bucket = url.removeprefix("s3://").split("/")[0]

    def uploads() -> set[str]:
        return {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

    for seed in range(3):
        before = uploads()
        proc = start_putter(url, s3_endpoint, size)
        deadline = time.monotonic() + 30
        while not uploads() - before:  # wait until a multipart put is under way: kill mid-put
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
        time.sleep(random.Random(seed).uniform(0.0, 0.05))
        proc.kill()
        proc.wait()
        assert_blobs_whole(store, size)
        assert store.remove_partial_writes() == 0
    assert uploads()  # the kills landed mid-put, leaving incomplete uploads and no torn blob
