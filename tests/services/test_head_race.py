"""A session's head only moves forward: an epoch checkpoint persisted late (by the job's
persister, outside the session's strand) never replaces a newer manual save."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from app.services import checkpoints
from tests.helpers import LiveServer, new_session


def _train(client: httpx.Client, sid: str, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.random((4, 28, 28), dtype=np.float32).tolist()
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)].tolist()
        r = client.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": x, "y": y}})
        assert r.status_code == 200, r.text


def test_persist_late_epoch_checkpoint_keeps_newer_manual_head(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    ctx = server.ctx
    sid = new_session(client, "hera", mlp_id)
    _train(client, sid, 4, seed=1)
    live = ctx.pool.get(sid)
    assert live is not None
    # The job's epoch snapshot, taken in the strand at step 4 ...
    snap = live.strand.submit(checkpoints.snapshot, ctx, live).result(timeout=30)
    assert snap.steps == 4
    # ... while the session goes on and the user saves by hand at step 7 ...
    _train(client, sid, 3, seed=2)
    manual = client.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "mine"}).json()
    assert manual["step"] == 7
    # ... and only then does the persister store the older epoch checkpoint.
    late = checkpoints.persist(ctx, live, snap, kind="epoch", label="late epoch")
    assert late.step == 4
    _assert_head_is(server, client, sid, manual)


def test_persist_racing_manual_save_keeps_the_newer_head(
        server: LiveServer, client: httpx.Client, mlp_id: str) -> None:
    """The persister has stored its blob and is about to write the rows when a manual save
    commits: whatever it decided before, the head must end at the newer, manual one."""
    ctx = server.ctx
    sid = new_session(client, "hebe", mlp_id)
    _train(client, sid, 4, seed=3)
    live = ctx.pool.get(sid)
    assert live is not None
    snap = live.strand.submit(checkpoints.snapshot, ctx, live).result(timeout=30)
    _train(client, sid, 3, seed=4)
    at_door, go = threading.Event(), threading.Event()
    begin_core = ctx.db.begin_core

    @contextmanager
    def held(*args: Any, **kwargs: Any) -> Iterator[Any]:
        if threading.current_thread().name == "late-persister":
            at_door.set()  # its blob is stored; its transaction waits for the manual save
            assert go.wait(30)
        with begin_core(*args, **kwargs) as conn:
            yield conn

    ctx.db.begin_core = held  # type: ignore[method-assign]
    try:
        persister = threading.Thread(
            target=checkpoints.persist, args=(ctx, live, snap),
            kwargs={"kind": "epoch", "label": "late epoch"}, name="late-persister")
        persister.start()
        assert at_door.wait(30)
        manual = client.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "mine"}).json()
        assert manual["step"] == 7
        go.set()
        persister.join(30)
        assert not persister.is_alive()
    finally:
        ctx.db.begin_core = begin_core  # type: ignore[method-assign]
    _assert_head_is(server, client, sid, manual)


def _assert_head_is(server: LiveServer, client: httpx.Client, sid: str,
                    manual: dict[str, Any]) -> None:
    ctx = server.ctx
    live = ctx.pool.get(sid)
    assert live is not None
    live.strand.submit(lambda: None).result(timeout=30)  # any hand-over to the strand is done
    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["head_checkpoint_id"] == manual["id"]
    assert live.head_checkpoint_id == manual["id"] and live.saved_steps == manual["step"]
    # Loaded again from its head, the session answers as the manual checkpoint does.
    x = np.random.default_rng(9).random((3, 28, 28), dtype=np.float32).tolist()
    before = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x}}).json()
    ctx.pool.remove(sid)
    after = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x}}).json()
    assert after == before
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == manual["step"]
