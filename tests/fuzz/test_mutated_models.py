"""500 byte-mutated copies of the MLP uploaded to one server: each answered 201 or 4xx.

The mutations (seeded) flip, overwrite, insert and delete bytes in the first 8 KB and in the
flatbuffer's tables and vtables (found by walking the TFLite schema), overwrite table offsets
with boundary values, and truncate. Every upload is smoke-run by the probe child; while they
run, another user's session keeps answering, and every 25 uploads it trains a step and
infers, compared with a reference interpreter in this process that took the same steps. At
the end the server is alive and at most one probe child is left, none after the validator
closes. Accepted mutants get a session of their own (train, infer) before they are deleted.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import models
from app.runtime.interpreter import LiteSession
from tests.helpers import LiveServer, backend_settings, new_session, upload

MUTANTS = 500
CHECK_EVERY = 25
SEED = 20240611
HEAD = 8192
PROBE = "app.runtime.probe"
RNG = np.random.default_rng(7)
X = RNG.random((8, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)]
PROBE_X = RNG.random((4, 28, 28), dtype=np.float32)


# What a probe child looks like in /proc


def probe_children() -> set[int]:
    """Children of this process that run the model probe, and any unreaped (zombie) child:
    a zombie has no command line left to tell what it ran."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == me and (state == "Z" or PROBE.encode() in cmdline):
            found.add(int(entry.name))
    return found


# Mutations


def table_spans(model: bytes) -> list[tuple[int, int]]:
    """(start, length) of every table and vtable the TFLite schema reaches from the root."""
    from tensorflow.lite.python import schema_py_generated as fb

    spans: list[tuple[int, int]] = []

    def add(obj: Any) -> None:
        pos = obj._tab.Pos
        vtable = pos - int.from_bytes(model[pos:pos + 4], "little", signed=True)
        spans.append((pos, 16))  # the soffset and the first fields
        spans.append((vtable, int.from_bytes(model[vtable:vtable + 2], "little")))

    root = fb.Model.GetRootAs(model, 0)
    add(root)
    for i in range(root.OperatorCodesLength()):
        add(root.OperatorCodes(i))
    for i in range(root.SubgraphsLength()):
        graph = root.Subgraphs(i)
        add(graph)
        for j in range(graph.TensorsLength()):
            add(graph.Tensors(j))
        for j in range(graph.OperatorsLength()):
            add(graph.Operators(j))
    for i in range(root.SignatureDefsLength()):
        sig = root.SignatureDefs(i)
        add(sig)
        for j in range(sig.InputsLength()):
            add(sig.Inputs(j))
        for j in range(sig.OutputsLength()):
            add(sig.Outputs(j))
    for i in range(root.BuffersLength()):
        add(root.Buffers(i))
    return spans


KINDS = ("flip-head", "table", "table", "insert", "truncate", "delete", "offset")


def mutate(model: bytes, spans: list[tuple[int, int]], rng: np.random.Generator
           ) -> tuple[str, bytes]:
    """One mutant and the name of what was done to it."""
    b = bytearray(model)
    kind = str(rng.choice(KINDS))

    def in_table() -> int:
        start, length = spans[rng.integers(len(spans))]
        return min(len(b) - 1, start + int(rng.integers(0, max(length, 4))))

    if kind == "flip-head":
        for _ in range(rng.integers(1, 9)):
            b[rng.integers(0, HEAD)] ^= 1 << int(rng.integers(0, 8))
    elif kind == "table":
        for _ in range(rng.integers(1, 5)):
            b[in_table()] = int(rng.integers(0, 256))
    elif kind == "insert":
        at = int(rng.integers(0, HEAD)) if rng.random() < 0.5 else in_table()
        b[at:at] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    elif kind == "truncate":
        del b[int(rng.integers(0, HEAD if rng.random() < 0.5 else len(b))):]
    elif kind == "delete":
        at = int(rng.integers(0, HEAD)) if rng.random() < 0.5 else in_table()
        del b[at:at + int(rng.integers(1, 65))]
    else:  # an offset or length field set to a boundary value
        at = spans[rng.integers(len(spans))][0]
        value = int(rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(b), len(b) - 4]))
        b[at:at + 4] = value.to_bytes(4, "little")
    return kind, bytes(b)


# The server and the bystander


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, set[int]]]:
    """Our own server (sqlite-local), and the probe children that existed before it."""
    before = probe_children()
    root = tmp_path_factory.mktemp("mutants")
    with backend_settings("sqlite-local", root, None, validate_timeout_seconds=30) as settings:
        server = LiveServer(settings).start()
        yield server, before
        server.stop()


class Bystander:
    """Another user's session, and a reference interpreter that takes the same steps."""

    def __init__(self, client: httpx.Client, model_id: str, model: bytes) -> None:
        self.client = client
        self.sid = new_session(client, "bystander", model_id)
        self.reference = LiteSession(model)
        self.lock = threading.Lock()  # held while the weights change
        self.expected = self.reference.run("infer", {"x": PROBE_X})["output"]
        self.steps = 0
        self.background_calls = 0

    def infer(self) -> np.ndarray:
        r = self.client.post(f"/v1/sessions/{self.sid}/infer",
                             json={"inputs": {"x": PROBE_X.tolist()}})
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["outputs"]["output"], dtype=np.float32)

    def check(self) -> None:
        """One train step and an infer, each equal to the reference's."""
        with self.lock:
            r = self.client.post(f"/v1/sessions/{self.sid}/train",
                                 json={"inputs": {"x": X.tolist(), "y": Y.tolist()}})
            assert r.status_code == 200, r.text
            self.steps += 1
            want = float(self.reference.run("train", {"x": X, "y": Y})["loss"])
            assert r.json()["step"] == self.steps
            assert r.json()["outputs"]["loss"] == pytest.approx(want, rel=1e-5)
            self.expected = self.reference.run("infer", {"x": PROBE_X})["output"]
            np.testing.assert_allclose(self.infer(), self.expected, rtol=1e-5, atol=1e-6)

    def keep_inferring(self, stop: threading.Event, failures: list[str]) -> None:
        """Infer every 0.2 s until stop; failures collected, not raised (another thread)."""
        while not stop.wait(0.2):
            try:
                with self.lock:
                    np.testing.assert_allclose(self.infer(), self.expected, rtol=1e-5,
                                               atol=1e-6)
                self.background_calls += 1
            except (AssertionError, httpx.HTTPError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")


def use_accepted(client: httpx.Client, model_id: str) -> None:
    """A mutant that passed its smoke run serves a session (or says why not), then goes."""
    r = client.post("/v1/users/mutant-user/sessions", json={"model_id": model_id})
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        sid = r.json()["id"]
        for path, body in (("train", {"x": X.tolist(), "y": Y.tolist()}),
                           ("infer", {"x": PROBE_X.tolist()})):
            r = client.post(f"/v1/sessions/{sid}/{path}", json={"inputs": body})
            assert r.status_code in (200, 422), r.text
        assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert client.delete(f"/v1/models/{model_id}").status_code == 204


def test_mutated_models_are_answered_and_the_server_keeps_serving(
        live: tuple[LiveServer, set[int]]) -> None:
    server, before = live
    model = models.build_cached("mlp")
    spans = table_spans(model)
    rng = np.random.default_rng(SEED)
    outcomes: Counter[tuple[str, int]] = Counter()
    reasons: Counter[str] = Counter()
    probe_pids: list[int] = []
    crashes = timeouts = 0
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=120) as client, \
            httpx.Client(base_url=server.url, timeout=120) as other:
        bystander = Bystander(other, upload(client, model, "mlp"), model)
        stop, failures = threading.Event(), []
        background = threading.Thread(target=bystander.keep_inferring, args=(stop, failures),
                                      daemon=True)
        background.start()
        try:
            for i in range(MUTANTS):
                kind, data = mutate(model, spans, rng)
                try:
                    r = client.post("/v1/models", files={"file": ("m.tflite", data)},
                                    data={"name": f"mutant-{i}"})
                except httpx.HTTPError as exc:
                    pytest.fail(f"mutant {i} ({kind}): the connection failed: {exc!r}")
                assert r.status_code == 201 or 400 <= r.status_code < 500, (i, kind, r.text)
                outcomes[(kind, r.status_code)] += 1
                if r.status_code == 201:
                    use_accepted(client, r.json()["id"])
                else:
                    detail = r.json()["detail"]
                    crashes += "crashed the TFLite interpreter" in detail
                    timeouts += "did not finish within" in detail
                    reasons[detail.split(":")[0][:60]] += 1
                children = probe_children() - before
                assert len(children) <= 1, f"after mutant {i}: probe children {children}"
                for pid in children - set(probe_pids):
                    probe_pids.append(pid)
                if (i + 1) % CHECK_EVERY == 0:
                    bystander.check()
        finally:
            stop.set()
            background.join(30)
        assert not failures, failures[:5]
        assert bystander.background_calls > 0
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        bystander.check()
    elapsed = time.monotonic() - started
    accepted = sum(n for (_, status), n in outcomes.items() if status == 201)
    print(f"\nmutated models: {MUTANTS} tried, {accepted} accepted, {MUTANTS - accepted} "
          f"rejected; probe crashes {crashes}, timeouts {timeouts}; probe processes "
          f"{len(probe_pids)} (restarts {len(probe_pids) - 1}); {elapsed:.0f} s; bystander "
          f"steps {bystander.steps}, background infers {bystander.background_calls}")
    print("by kind:", dict(sorted(outcomes.items())))
    print("reasons:", dict(reasons.most_common(8)))
    assert accepted > 0 and accepted < MUTANTS  # the mutations reach both outcomes
    assert len(probe_children() - before) <= 1
    server.ctx.validator.close()
    assert probe_children() - before == set()
