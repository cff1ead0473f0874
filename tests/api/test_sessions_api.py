"""Sessions: create, train, infer, other signatures, tensor checks, ordering, delete."""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest

from tests.helpers import assert_problem, new_session, upload

RNG = np.random.default_rng(0)
X = RNG.random((8, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 8)]


def train(client: httpx.Client, sid: str, x: np.ndarray = X, y: np.ndarray = Y) -> dict:  # type: ignore[type-arg]
    body = {"inputs": {"x": x.tolist(), "y": y.tolist()}}
    r = client.post(f"/v1/sessions/{sid}/train", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def infer(client: httpx.Client, sid: str, x: np.ndarray = X) -> np.ndarray:
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x.tolist()}})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"]["output"], dtype=np.float32)


def test_create_session_starts_at_step_zero(client: httpx.Client, mlp_id: str) -> None:
    r = client.post("/v1/users/alice/sessions", json={"model_id": mlp_id})
    assert r.status_code == 201
    body = r.json()
    assert body["user_id"] == "alice" and body["model_id"] == mlp_id
    assert body["steps"] == 0 and body["last_loss"] is None
    assert client.get(f"/v1/sessions/{body['id']}").json()["id"] == body["id"]


def test_train_counts_steps_and_lowers_loss(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    losses = [train(client, sid)["outputs"]["loss"] for _ in range(20)]
    assert losses[-1] < losses[0] * 0.5
    last = train(client, sid)
    assert last["step"] == 21
    session = client.get(f"/v1/sessions/{sid}").json()
    assert session["steps"] == 21
    assert session["last_loss"] == pytest.approx(last["outputs"]["loss"])


def test_same_base_model_personalizes_per_session(client: httpx.Client, mlp_id: str) -> None:
    a, b = new_session(client, "alice", mlp_id), new_session(client, "bob", mlp_id)
    assert np.array_equal(infer(client, a), infer(client, b))
    train(client, a)
    assert not np.array_equal(infer(client, a), infer(client, b))


def test_infer_returns_every_output(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X[:3].tolist()}})
    outputs = r.json()["outputs"]
    assert set(outputs) == {"output", "logits"}
    probs = np.asarray(outputs["output"])
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_model_with_other_names_and_int_labels_trains(client: httpx.Client,
                                                       head_bytes: bytes) -> None:
    model_id = upload(client, head_bytes, "head")
    sid = new_session(client, "carol", model_id)
    feats = RNG.random((16, 64), dtype=np.float32)
    labels = (feats[:, 0] * 4).astype(np.int32).clip(0, 3)
    losses = []
    for _ in range(30):
        r = client.post(f"/v1/sessions/{sid}/train",
                        json={"inputs": {"bottleneck": feats.tolist(), "label": labels.tolist()}})
        assert r.status_code == 200, r.text
        losses.append(r.json()["outputs"]["loss"])
    assert losses[-1] < losses[0]
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"bottleneck": feats.tolist()}})
    assert np.asarray(r.json()["outputs"]["probabilities"]).shape == (16, 4)
    bad = client.post(f"/v1/sessions/{sid}/train", json={"inputs": {
        "bottleneck": feats.tolist(), "label": (labels + 0.5).tolist()}})
    assert_problem(bad, 422, "'label'", "int32", "float")


@pytest.mark.parametrize(("inputs", "needles"), [
    ({"x": X[:2, :, :27].tolist(), "y": Y[:2].tolist()},
     ("'x'", "[-1, 28, 28]", "received shape [2, 28, 27]")),
    ({"x": X[:2].tolist()}, ("missing input(s) 'y'",)),
    ({"x": X[:2].tolist(), "y": Y[:2].tolist(), "z": 1}, ("unknown input(s) 'z'",)),
    ({"x": [[1, 2], [3]], "y": Y[:2].tolist()}, ("'x'", "rectangular")),
    ({"x": "hello", "y": Y[:2].tolist()}, ("'x'", "float32", "string")),
    ({"x": [], "y": []}, ("'x'",)),
])
def test_train_with_bad_tensors_answers_422_naming_them(
    client: httpx.Client, mlp_id: str, inputs: dict, needles: tuple[str, ...]  # type: ignore[type-arg]
) -> None:
    sid = new_session(client, "mallory", mlp_id)
    before = infer(client, sid)
    assert_problem(client.post(f"/v1/sessions/{sid}/train", json={"inputs": inputs}), 422, *needles)
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == 0
    assert np.array_equal(infer(client, sid), before)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"x": 1}', b'{"inputs": []}'])
def test_malformed_bodies_answer_422(client: httpx.Client, mlp_id: str, body: bytes) -> None:
    sid = new_session(client, "mallory", mlp_id)
    assert_problem(client.post(f"/v1/sessions/{sid}/infer", content=body,
                               headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize("user", ["bad user", "-leading", "a" * 65, "x/y", "ü"])
def test_invalid_user_id_answers_422(client: httpx.Client, mlp_id: str, user: str) -> None:
    r = client.post(f"/v1/users/{user}/sessions", json={"model_id": mlp_id})
    assert r.status_code in (404, 422)  # "x/y" does not match the route at all
    assert r.headers["content-type"].startswith("application/problem+json")


def test_unknown_ids_answer_404(client: httpx.Client, mlp_id: str) -> None:
    assert_problem(client.post("/v1/users/alice/sessions", json={"model_id": "mdl_x"}), 404)
    assert_problem(client.get("/v1/sessions/ses_x"), 404, "ses_x")
    assert_problem(client.post("/v1/sessions/ses_x/train", json={"inputs": {}}), 404)
    assert_problem(client.delete("/v1/sessions/ses_x"), 404)
    sid = new_session(client, "alice", mlp_id)
    assert_problem(client.post(f"/v1/sessions/{sid}/signatures/nope", json={"inputs": {}}),
                   404, "nope")


def test_calls_on_one_session_apply_once_each_in_order(client: httpx.Client,
                                                       mlp_id: str) -> None:
    sid = new_session(client, "dave", mlp_id)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        steps = list(pool.map(lambda _: train(client, sid)["step"], range(40)))
    assert sorted(steps) == list(range(1, 41))
    assert client.get(f"/v1/sessions/{sid}").json()["steps"] == 40


def test_list_sessions_is_per_user(client: httpx.Client, mlp_id: str) -> None:
    mine = {new_session(client, "erin", mlp_id) for _ in range(3)}
    new_session(client, "frank", mlp_id)
    items = client.get("/v1/users/erin/sessions").json()["items"]
    assert {s["id"] for s in items} == mine
    assert all(s["user_id"] == "erin" for s in items)


def test_delete_session_keeps_its_checkpoints(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "grace", mlp_id)
    train(client, sid)
    ckpt = client.post(f"/v1/sessions/{sid}/checkpoints").json()["id"]
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert_problem(client.get(f"/v1/sessions/{sid}"), 404)
    assert_problem(client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X.tolist()}}),
                   404)
    assert client.get(f"/v1/checkpoints/{ckpt}").status_code == 200
    assert client.get(f"/v1/checkpoints/{ckpt}/file").status_code == 200
