"""Concurrent calls: each is applied exactly once, one session's calls one at a time.

The mixed test checks every session's history for linearizability: some serial order of
its calls, consistent with what each answered and with real time (a call that got its
answer before another was sent comes first), must exist and end at the session's final
`steps`. A train step lost, applied twice, or a restore or save that raced a step would
leave no such order.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import httpx
import numpy as np

from tests.helpers import new_session

RNG = np.random.default_rng(11)
X = RNG.random((4, 28, 28), dtype=np.float32).tolist()
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 4)].tolist()
TRAIN = {"inputs": {"x": X, "y": Y}}
INFER = {"inputs": {"x": X}}


def test_concurrent_train_calls_on_one_session_apply_exactly_once(
        client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "conc-one", mlp_id)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(
            lambda _: client.post(f"/v1/sessions/{sid}/train", json=TRAIN), range(50)))
    assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers][:3]
    assert sorted(r.json()["step"] for r in answers) == list(range(1, 51))  # each step once
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == 50


@dataclass(frozen=True)
class Op:
    """One answered call: what it was, what it reported, when it was sent and answered."""

    kind: str  # "train" (value: the step it reported), "save" (the checkpoint's step),
    value: int  # "restore" (the step of the checkpoint restored), "infer" (no value)
    sent: float
    answered: float


def linearizable(ops: list[Op], start: int, final: int) -> bool:
    """Whether some order of ops, respecting real time, explains every answer and `final`."""
    n = len(ops)
    before = [sum(1 << j for j in range(n) if ops[j].answered < ops[i].sent) for i in range(n)]
    everything = (1 << n) - 1

    @cache
    def search(done: int, step: int) -> bool:
        if done == everything:
            return step == final
        for i, op in enumerate(ops):
            if done >> i & 1 or before[i] & ~done:
                continue
            if op.kind == "train":
                ok, after = op.value == step + 1, step + 1
            elif op.kind == "save":
                ok, after = op.value == step, step
            elif op.kind == "restore":
                ok, after = True, op.value
            else:
                ok, after = True, step
            if ok and search(done | 1 << i, after):
                return True
        return False

    return search(0, start)


def test_mixed_concurrent_calls_over_many_sessions_lose_no_step(
        client: httpx.Client, mlp_id: str) -> None:
    sessions = [new_session(client, f"conc-{i % 5}", mlp_id) for i in range(20)]
    saved: dict[str, list[tuple[str, int]]] = {}  # checkpoints a restore may pick
    for sid in sessions:
        r = client.post(f"/v1/sessions/{sid}/checkpoints", json={"label": "base"})
        assert r.status_code == 201, r.text
        saved[sid] = [(r.json()["id"], 0)]
    plan = [(sid, kind) for sid in sessions
            for kind in ["train"] * 5 + ["infer"] * 2 + ["save"] * 2 + ["restore"]]
    random.Random(5).shuffle(plan)
    assert len(plan) == 200
    lock = threading.Lock()
    history: dict[str, list[Op]] = {sid: [] for sid in sessions}
    failures: list[str] = []

    def call(sid: str, kind: str) -> None:
        base = f"/v1/sessions/{sid}"
        sent = time.monotonic()
        if kind == "train":
            r = client.post(f"{base}/train", json=TRAIN)
        elif kind == "infer":
            r = client.post(f"{base}/infer", json=INFER)
        elif kind == "save":
            r = client.post(f"{base}/checkpoints", json={"label": "mid"})
        else:
            with lock:  # one of the session's own checkpoints, answered before this call
                target_id, target_step = random.choice(saved[sid])
            r = client.post(f"{base}/restore", json={"checkpoint_id": target_id})
        answered = time.monotonic()
        if r.status_code not in (200, 201):
            with lock:
                failures.append(f"{kind} {sid}: {r.status_code} {r.text}")
            return
        body = r.json()
        value = {"train": lambda: body["step"], "save": lambda: body["step"],
                 "restore": lambda: target_step, "infer": lambda: 0}[kind]()
        with lock:
            history[sid].append(Op(kind, value, sent, answered))
            if kind == "save":
                saved[sid].append((body["id"], body["step"]))

    with ThreadPoolExecutor(32) as pool:
        for f in [pool.submit(call, sid, kind) for sid, kind in plan]:
            f.result()
    assert failures == []  # no 5xx, and nothing else either: every call was valid

    for sid in sessions:
        final = client.get(f"/v1/sessions/{sid}").json()["steps"]
        ops = history[sid]
        assert len(ops) == 10
        assert linearizable(ops, 0, final), (sid, final, sorted(ops, key=lambda o: o.sent))


def test_linearizability_check_catches_a_lost_or_doubled_step() -> None:
    t = iter(range(100))

    def op(kind: str, value: int = 0) -> Op:
        sent = next(t)
        return Op(kind, value, sent, sent + 0.5)  # one after another

    trains = [op("train", 1), op("train", 2), op("save", 2), op("train", 3)]
    assert linearizable(trains, 0, 3)
    assert not linearizable(trains, 0, 2)  # a step lost after it was answered
    assert not linearizable([op("train", 1), op("train", 1)], 0, 1)  # applied once, told twice
    assert linearizable([op("train", 1), op("restore", 0), op("train", 1)], 0, 1)
    overlapping = [Op("train", 1, 0, 10), Op("train", 2, 0, 10), Op("save", 1, 0, 10)]
    assert linearizable(overlapping, 0, 2)  # the save ran between the two steps
