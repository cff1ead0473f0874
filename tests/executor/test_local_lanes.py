"""The local executor's lanes on a real interpreter and a real local store: the round's
global restored from one file a lane, the devices' examples gathered once, the same bits as
an update run alone; and the cache bounded by the bytes it holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.executor.cache import Lru
from app.executor.local import LocalExecutor
from app.executor.update import ClientUpdate, UpdateResult, run_update
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan
from app.runtime.signatures import read_signatures
from app.store.blobs import open_store
from tests.fleets.support import digits, initial_weights, npz


def test_lru_drops_least_recent_over_budget() -> None:
    cache = Lru[bytes](10, cost=len, budget=10)
    for key in "abc":
        cache.get(key, lambda: b"1234")
    cache.get("b", lambda: b"")  # b used: a is the least recent
    cache.put("d", b"12")
    kept = {k for k in "abcd" if cache.get(k, lambda: b"") != b""}
    assert kept == {"b", "c", "d"}  # 4 + 4 + 2 bytes; a (4 more) went first


@pytest.fixture()
def lanes(tmp_path: Path, mlp_bytes: bytes) -> Iterator[LocalExecutor]:
    store = open_store(str(tmp_path / "store"))
    store.put("m.tflite", mlp_bytes)
    store.put("g.ckpt", initial_weights(mlp_bytes))
    store.put("d.npz", npz(**digits(120)))
    (tmp_path / "work").mkdir()
    executor = LocalExecutor(tmp_path / "work", store, lanes=2)
    try:
        yield executor
    finally:
        executor.shutdown()


def _update(r: int, c: int) -> ClientUpdate:
    return ClientUpdate(
        fleet_id="flt_t", round=r, client_id=c, session_id=f"ses_{c}", user_id="u",
        model_id="mdl", model_key="m.tflite", dataset_key="d.npz",
        indices=np.arange(c * 20, c * 20 + 20), start_key="g.ckpt", own_key=None, keep=(),
        plan=Plan(epochs=1, batch_size=8, shuffle=True, seed=(3, r, c), fixed_batch=False),
        train_inputs=("x", "y"))


def test_run_updates_restore_one_start_file_per_lane(lanes: LocalExecutor,
                                                     mlp_bytes: bytes) -> None:
    work = lanes.scratch
    for r in (1, 2):  # two rounds from the same global: each lane writes its file once
        outcomes = list(lanes.run_updates([_update(r, c) for c in range(6)], lambda: False))
        assert all(isinstance(o, UpdateResult) for o in outcomes)
        assert 1 <= len(list(work.glob("start-*.ckpt"))) <= 2
    # The same bits as an update run alone, restoring bytes written for it.
    lite = LiteSession(mlp_bytes)
    alone = run_update(_update(2, 3), lambda: lite, lambda s: read_signatures(s.interpreter),
                       lambda: lanes.dataset("d.npz"), lanes.fetch, lanes.read, work,
                       lambda: False)
    by_client = {o.client_id: o for o in outcomes if isinstance(o, UpdateResult)}
    assert isinstance(alone, UpdateResult)
    assert by_client[3].data == alone.data
    lanes.shutdown()
    assert not list(work.glob("start-*.ckpt"))
