"""Checkpoints: save, list, download, restore here and in a plain interpreter, ownership."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np

from app.runtime.interpreter import LiteSession
from tests.helpers import LiveServer, assert_problem, new_session, upload

RNG = np.random.default_rng(1)
X = RNG.random((16, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 16)]


def train(client: httpx.Client, sid: str, n: int = 1) -> None:
    for _ in range(n):
        r = client.post(f"/v1/sessions/{sid}/train",
                        json={"inputs": {"x": X.tolist(), "y": Y.tolist()}})
        assert r.status_code == 200, r.text


def infer(client: httpx.Client, sid: str) -> np.ndarray:
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": X.tolist()}})
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"]["output"], dtype=np.float32)


def save(client: httpx.Client, sid: str, label: str | None = None) -> dict:  # type: ignore[type-arg]
    r = client.post(f"/v1/sessions/{sid}/checkpoints", json={"label": label} if label else None)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_checkpoint_records_step_and_file(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    train(client, sid, 3)
    ckpt = save(client, sid, "after three")
    assert ckpt["step"] == 3 and ckpt["kind"] == "manual" and ckpt["label"] == "after three"
    assert ckpt["user_id"] == "alice" and ckpt["session_id"] == sid and ckpt["model_id"] == mlp_id
    data = client.get(f"/v1/checkpoints/{ckpt['id']}/file").content
    assert hashlib.sha256(data).hexdigest() == ckpt["sha256"] and len(data) == ckpt["size_bytes"]
    assert client.get(f"/v1/sessions/{sid}").json()["head_checkpoint_id"] == ckpt["id"]


def test_downloaded_checkpoint_restores_in_a_plain_interpreter(
    client: httpx.Client, mlp_id: str, mlp_bytes: bytes, tmp_path
) -> None:
    sid = new_session(client, "alice", mlp_id)
    train(client, sid, 5)
    ckpt = save(client, sid)
    path = tmp_path / "phone.ckpt"
    path.write_bytes(client.get(f"/v1/checkpoints/{ckpt['id']}/file").content)
    phone = LiteSession(client.get(f"/v1/models/{mlp_id}/file").content)
    fresh = phone.run("infer", {"x": X})["output"]
    phone.restore(path)
    restored = phone.run("infer", {"x": X})["output"]
    served = infer(client, sid)
    assert np.max(np.abs(restored - served)) < 1e-5
    assert not np.allclose(fresh, served)


def test_checkpoint_file_reads_with_tf_train(client: httpx.Client, mlp_id: str, tmp_path) -> None:
    import tensorflow as tf

    sid = new_session(client, "alice", mlp_id)
    ckpt = save(client, sid)
    path = tmp_path / "c.ckpt"
    path.write_bytes(client.get(f"/v1/checkpoints/{ckpt['id']}/file").content)
    names = set(tf.train.load_checkpoint(str(path)).get_variable_to_shape_map())
    assert {"dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias"} <= names


def test_restore_brings_back_weights_and_step(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    train(client, sid, 2)
    ckpt = save(client, sid)
    at_ckpt = infer(client, sid)
    train(client, sid, 3)
    assert not np.array_equal(infer(client, sid), at_ckpt)
    r = client.post(f"/v1/sessions/{sid}/restore", json={"checkpoint_id": ckpt["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["steps"] == 2 and r.json()["head_checkpoint_id"] == ckpt["id"]
    assert np.array_equal(infer(client, sid), at_ckpt)


def test_new_session_from_checkpoint_answers_like_the_original(client: httpx.Client,
                                                               mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    train(client, sid, 4)
    ckpt = save(client, sid)
    clone = new_session(client, "alice", mlp_id, checkpoint_id=ckpt["id"])
    assert client.get(f"/v1/sessions/{clone}").json()["steps"] == 4
    assert np.array_equal(infer(client, clone), infer(client, sid))


def test_other_users_checkpoint_is_not_found(client: httpx.Client, mlp_id: str) -> None:
    sid = new_session(client, "alice", mlp_id)
    ckpt = save(client, sid)
    assert_problem(client.post("/v1/users/bob/sessions",
                               json={"model_id": mlp_id, "checkpoint_id": ckpt["id"]}), 404)
    bobs = new_session(client, "bob", mlp_id)
    before = infer(client, bobs)
    assert_problem(client.post(f"/v1/sessions/{bobs}/restore",
                               json={"checkpoint_id": ckpt["id"]}), 404)
    assert np.array_equal(infer(client, bobs), before)


def test_checkpoint_of_another_model_is_rejected(client: httpx.Client, mlp_id: str,
                                                 mlp_bytes: bytes) -> None:
    other_model = upload(client, mlp_bytes, "mlp-copy")
    sid = new_session(client, "alice", other_model)
    ckpt = save(client, sid)
    assert_problem(client.post("/v1/users/alice/sessions",
                               json={"model_id": mlp_id, "checkpoint_id": ckpt["id"]}),
                   422, other_model)


def test_list_checkpoints_newest_first_with_filters(client: httpx.Client, mlp_id: str) -> None:
    a, b = new_session(client, "heidi", mlp_id), new_session(client, "heidi", mlp_id)
    ids = [save(client, a)["id"], save(client, b)["id"], save(client, a)["id"]]
    items = client.get("/v1/users/heidi/checkpoints").json()["items"]
    assert [c["id"] for c in items] == ids[::-1]
    only_a = client.get("/v1/users/heidi/checkpoints", params={"session_id": a}).json()["items"]
    assert [c["id"] for c in only_a] == [ids[2], ids[0]]
    assert client.get("/v1/users/nobody/checkpoints").json() == {"items": [], "next_cursor": None}


def test_delete_checkpoint(client: httpx.Client, mlp_id: str, server: LiveServer) -> None:
    sid = new_session(client, "ivan", mlp_id)
    old = save(client, sid)
    head = save(client, sid)
    assert_problem(client.delete(f"/v1/checkpoints/{head['id']}"), 409, sid)
    assert client.delete(f"/v1/checkpoints/{old['id']}").status_code == 204
    assert_problem(client.get(f"/v1/checkpoints/{old['id']}"), 404)
    assert_problem(client.get(f"/v1/checkpoints/{old['id']}/file"), 404)
    key = f"users/ivan/checkpoints/{old['id']}.ckpt"
    assert not server.ctx.store.exists(key)
    assert server.ctx.store.exists(f"users/ivan/checkpoints/{head['id']}.ckpt")
