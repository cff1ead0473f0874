"""The fast lane answers per-step protocol calls itself, and hands FastAPI everything else.

Each test records which requests the lane took, so it proves both that the fast path is
the one serving live sessions and that what it declines still works through the routes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from app.api.fastlane import FastLane
from tests.api.test_jobs_api import learnable, new_dataset, start_job
from tests.helpers import LiveServer, assert_problem, new_session, running_server

RNG = np.random.default_rng(11)
X = RNG.random((8, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)]
HLEN = "Inference-Header-Content-Length"
ADMIN = "admin-token-for-fastlane-0123456789"


class Recording:
    """Records (path, taken) for every request the lane saw: taken when the lane answered
    it itself, not taken when it passed it on to FastAPI."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._answer = FastLane.answer

    def install(self) -> None:
        rec, answer = self, self._answer

        async def recording_answer(lane: FastLane, scope: Any, receive: Any, send: Any) -> bool:
            taken = await answer(lane, scope, receive, send)
            if scope["type"] == "http":
                rec.seen.append((scope["path"], taken))
            return taken

        FastLane.answer = recording_answer  # type: ignore[method-assign]

    def uninstall(self) -> None:
        FastLane.answer = self._answer  # type: ignore[method-assign]

    def taken(self, path_part: str) -> list[bool]:
        return [t for p, t in self.seen if path_part in p]


@contextmanager
def recording() -> Iterator[Recording]:
    """The lane's requests recorded while the block runs."""
    rec = Recording()
    rec.install()
    try:
        yield rec
    finally:
        rec.uninstall()


@pytest.fixture(scope="module")
def lane(server: LiveServer) -> Iterator[Recording]:
    with recording() as rec:
        yield rec


def binary_body(arrays: dict[str, np.ndarray], **params: Any) -> tuple[bytes, dict[str, str]]:
    """An OIP request with binary inputs, as tritonclient builds it."""
    raw = {k: np.ascontiguousarray(v).tobytes() for k, v in arrays.items()}
    head = orjson.dumps({"inputs": [
        {"name": k, "shape": list(v.shape), "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw[k])}} for k, v in arrays.items()],
        "parameters": {"binary_data_output": True, **params}})
    return head + b"".join(raw.values()), {HLEN: str(len(head)),
                                           "content-type": "application/octet-stream"}


def train(client: httpx.Client, sid: str, suffix: str = "") -> httpx.Response:
    body, headers = binary_body({"x": X, "y": Y})
    return client.post(f"/v1/sessions/{sid}/v2/models/train{suffix}/infer", content=body,
                       headers=headers)


def steps(client: httpx.Client, sid: str) -> int:
    return client.get(f"/v1/sessions/{sid}").json()["steps"]  # type: ignore[no-any-return]


def test_live_session_steps_take_the_lane_and_count(client: httpx.Client, mlp_id: str,
                                                    lane: Recording) -> None:
    sid = new_session(client, "lane", mlp_id)
    lane.seen.clear()
    for _ in range(3):
        r = train(client, sid)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        assert int(r.headers[HLEN]) < len(r.content)
    assert train(client, sid, "/versions/1").status_code == 200
    assert lane.taken("/infer") == [True] * 4
    assert orjson.loads(r.content[:int(r.headers[HLEN])])["parameters"]["step"] == 3
    assert steps(client, sid) == 4
    assert all(not t for p, t in lane.seen if not p.endswith("/infer"))


def test_lane_errors_are_the_routes_problems(client: httpx.Client, mlp_id: str,
                                             lane: Recording) -> None:
    sid = new_session(client, "lane-errors", mlp_id)
    train(client, sid)
    lane.seen.clear()
    body, headers = binary_body({"x": X, "y": Y})
    cases = [
        (body[:-5], headers, 400, "binary section"),
        (body, {**headers, HLEN: "nope"}, 400, "not an integer"),
        (body, {**headers, HLEN: str(len(body) + 1)}, 400, "does not fit"),
        (binary_body({"x": X[:, :27], "y": Y})[0], binary_body({"x": X[:, :27], "y": Y})[1],
         422, "expected shape"),
    ]
    for content, hdrs, status, words in cases:
        r = client.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=content,
                        headers=hdrs)
        assert_problem(r, status, words)
    r = client.post(f"/v1/sessions/{sid}/v2/models/save/infer", content=body, headers=headers)
    assert_problem(r, 404, "unknown model 'save'")
    r = client.post(f"/v1/sessions/{sid}/v2/models/train/versions/2/infer", content=body,
                    headers=headers)
    assert_problem(r, 404, "unknown version '2'")
    assert lane.taken("/infer") == [True] * 6
    assert steps(client, sid) == 1  # none of them trained
    assert train(client, sid).status_code == 200


def test_what_the_lane_declines_still_works(server: LiveServer, client: httpx.Client,
                                            mlp_id: str, lane: Recording) -> None:
    sid = new_session(client, "lane-declined", mlp_id)
    server.ctx.pool.remove(sid)  # not live: the route loads it
    lane.seen.clear()
    assert train(client, sid).status_code == 200
    body, headers = binary_body({"x": X, "y": Y})
    r = client.post(f"/v1/sessions/{sid}/v2/models/train/infer?x=1", content=body,
                    headers=headers)
    assert r.status_code == 200, r.text
    assert lane.taken("/infer") == [False, False]
    assert train(client, sid).status_code == 200  # loaded now: the lane takes it
    assert lane.taken("/infer")[-1] is True
    missing = client.post("/v1/sessions/ses_missing/v2/models/train/infer", content=body,
                          headers=headers)
    assert_problem(missing, 404, "ses_missing")


def test_oversized_body_is_413_and_the_session_is_untouched(tmp_path_factory:
                                                            pytest.TempPathFactory,
                                                            mlp_bytes: bytes) -> None:
    root = tmp_path_factory.mktemp("lane-limit")
    with running_server("sqlite-local", root, None, max_request_bytes=200_000) as live, \
            httpx.Client(base_url=live.url, timeout=60) as c:
        mid = c.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)},
                     data={"name": "mlp"}).json()["id"]
        sid = new_session(c, "big", mid)
        assert train(c, sid).status_code == 200
        big_x = np.zeros((64, 28, 28), np.float32)
        body, headers = binary_body({"x": big_x, "y": np.zeros((64, 10), np.float32)})
        assert len(body) > 200_000
        r = c.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=body, headers=headers)
        assert_problem(r, 413, "limit")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        r = c.post(f"/v1/sessions/{sid}/v2/models/train/infer", content=chunks(),
                   headers=headers)
        assert_problem(r, 413, "limit")
        assert steps(c, sid) == 1
        assert train(c, sid).status_code == 200


@contextmanager
def keyed_server(root: Path, mlp_bytes: bytes, *users: str) -> Iterator[
        tuple[LiveServer, Recording, httpx.Client, str, list[httpx.Client]]]:
    """A server with keys on and its lane recorded: the admin's client, the MLP uploaded,
    and a client with its own key per user."""
    with running_server("sqlite-local", root, None, admin_token=ADMIN) as live, \
            recording() as rec:
        admin = httpx.Client(base_url=live.url, timeout=60,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        mid = admin.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)},
                         data={"name": "mlp"}).json()["id"]
        keys = [admin.post(f"/v1/users/{u}/keys").json()["key"] for u in users]
        yield live, rec, admin, mid, [httpx.Client(
            base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {k}"})
            for k in keys]


def test_keys_on_the_lane(tmp_path_factory: pytest.TempPathFactory, mlp_bytes: bytes) -> None:
    with keyed_server(tmp_path_factory.mktemp("lane-keys"), mlp_bytes, "ann", "ben") as (
            live, rec, admin, mid, (ann, ben)):
        anon = httpx.Client(base_url=live.url, timeout=60)
        sid = new_session(admin, "ann", mid)
        rec.seen.clear()
        assert train(ann, sid).status_code == 200  # first use of the key: the route reads it
        assert train(ann, sid).status_code == 200  # known now: the lane
        assert_problem(train(ben, sid), 404, sid)  # another user's session looks missing
        assert_problem(train(anon, sid), 401, "key")
        r = train(httpx.Client(base_url=live.url, headers={"Authorization": "Bearer x"}), sid)
        assert_problem(r, 401, "key")
        assert train(admin, sid).status_code == 200
        assert rec.taken("/infer") == [False, True, False, False, False, True]
        key_id = admin.get("/v1/users/ann/keys").json()["items"][0]["id"]
        assert admin.delete(f"/v1/users/ann/keys/{key_id}").status_code == 204
        assert_problem(train(ann, sid), 401, "key")  # revoked: not served from any cache
        assert steps(admin, sid) == 3


def _requests_total(client: httpx.Client, handler: str, status: str = "2xx") -> float:
    want = f'handler="{handler}"'
    for line in client.get("/metrics").text.splitlines():
        if (line.startswith("http_requests_total{") and want in line
                and f'status="{status}"' in line and 'method="POST"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_lane_calls_and_route_calls_count_in_the_same_request_metrics(
        client: httpx.Client, mlp_id: str, lane: Recording) -> None:
    sid = new_session(client, "lane-metrics", mlp_id)
    infer_route = "/v1/sessions/{session_id}/v2/models/{model_name}/infer"
    train_route = "/v1/sessions/{session_id}/train"
    before, json_before = _requests_total(client, infer_route), _requests_total(client,
                                                                               train_route)
    lane.seen.clear()
    for _ in range(3):
        assert train(client, sid).status_code == 200
    assert lane.taken("/infer") == [True] * 3  # answered by the lane, before FastAPI ...
    assert _requests_total(client, infer_route) == before + 3  # ... and counted all the same
    r = client.post(f"/v1/sessions/{sid}/train", json={"inputs": {"x": X.tolist(),
                                                                  "y": Y.tolist()}})
    assert r.status_code == 200
    assert _requests_total(client, train_route) == json_before + 1  # a route: instrumented
    assert_problem(client.post(f"/v1/sessions/{sid}/v2/models/nope/infer",
                               content=b"{}"), 404)
    assert _requests_total(client, infer_route, "4xx") >= 1


def _until_running(client: httpx.Client, path: str) -> None:
    for _ in range(600):
        if client.get(path + "?poll=1").json()["status"] == "running":  # the route's answer
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never ran")


STATIC = ("id", "user_id", "created_at", "started_at", "links")


def test_status_reads_of_running_work_take_the_lane(client: httpx.Client, mlp_id: str,
                                                    lane: Recording) -> None:
    sid = new_session(client, "lane-status", mlp_id)
    ds = new_dataset(client, "lane-status", learnable(4096, seed=1))
    job = start_job(client, sid, ds, epochs=10_000, batch_size=32)
    fleet = client.post("/v1/users/lane-status/fleets", json={
        "model_id": mlp_id, "dataset_id": ds, "clients": 20, "clients_per_round": 5,
        "rounds": 100_000, "batch_size": 32}).json()
    for kind, obj in (("jobs", job), ("fleets", fleet)):
        path = f"/v1/{kind}/{obj['id']}"
        _until_running(client, path)
        lane.seen.clear()
        fast = client.get(path)
        routed = client.get(path + "?via=route")  # a query string: the lane declines it
        assert [t for p, t in lane.seen if p == path] == [True, False]
        assert fast.status_code == routed.status_code == 200
        assert fast.headers["content-type"] == routed.headers["content-type"]
        a, b = fast.json(), routed.json()
        assert a.keys() == b.keys() and a["status"] == b["status"] == "running"
        assert {k: a[k] for k in STATIC} == {k: b[k] for k in STATIC}
        assert client.post(f"{path}/cancel").status_code == 202
    for kind, obj in (("jobs", job), ("fleets", fleet)):
        path = f"/v1/{kind}/{obj['id']}"
        for _ in range(600):
            lane.seen.clear()
            done = client.get(path)
            if done.json()["status"] == "cancelled":
                break
            time.sleep(0.02)
        assert done.json()["status"] == "cancelled"
        assert [t for p, t in lane.seen if p == path] == [False]  # ended: the route's


def test_another_users_running_job_is_a_404_not_a_lane_answer(
        tmp_path_factory: pytest.TempPathFactory, mlp_bytes: bytes) -> None:
    with keyed_server(tmp_path_factory.mktemp("lane-status-keys"), mlp_bytes, "ann",
                      "ben") as (live, rec, _, mid, (ann, ben)):
        sid = new_session(ann, "ann", mid)
        job = start_job(ann, sid, new_dataset(ann, "ann", learnable(4096, seed=2)),
                        epochs=10_000, batch_size=32)
        path = f"/v1/jobs/{job['id']}"
        _until_running(ann, path)
        rec.seen.clear()
        assert ann.get(path).status_code == 200
        assert_problem(ben.get(path), 404, job["id"])
        assert_problem(httpx.get(live.url + path), 401, "key")
        assert [t for p, t in rec.seen if p == path] == [True, False, False]
        assert ann.post(f"{path}/cancel").status_code == 202
