"""Model upload, validation in a child process, listing, download and delete."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

import models
from tests.helpers import LiveServer, assert_problem, new_session, upload


def test_upload_model_returns_signatures_with_open_dimensions(
    client: httpx.Client, mlp_bytes: bytes
) -> None:
    r = client.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)}, data={"name": "mlp"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "mlp"
    assert body["sha256"] == hashlib.sha256(mlp_bytes).hexdigest()
    assert body["size_bytes"] == len(mlp_bytes)
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    sigs = body["signatures"]
    assert {"train", "infer", "save", "restore"} <= set(sigs)
    assert sigs["train"]["inputs"] == {"x": {"shape": [-1, 28, 28], "dtype": "float32"},
                                       "y": {"shape": [-1, 10], "dtype": "float32"}}
    assert sigs["train"]["outputs"]["loss"] == {"shape": [], "dtype": "float32"}
    assert sigs["save"]["inputs"] == {"checkpoint_path": {"shape": [], "dtype": "string"}}
    assert client.get(f"/v1/models/{body['id']}").json() == body


def test_download_model_returns_exact_bytes(client: httpx.Client, mlp_id: str,
                                            mlp_bytes: bytes) -> None:
    r = client.get(f"/v1/models/{mlp_id}/file")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == mlp_bytes


def test_list_models_pages_newest_first(client: httpx.Client, head_bytes: bytes) -> None:
    ids = [upload(client, head_bytes, f"head-{i}") for i in range(3)]
    first = client.get("/v1/models", params={"limit": 2}).json()
    assert [m["id"] for m in first["items"]] == ids[::-1][:2]
    second = client.get("/v1/models", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["id"] == ids[0]
    assert_problem(client.get("/v1/models", params={"limit": 501}), 422, "limit")


GARBAGE = {
    "empty": b"",
    "text": b"this is not a model, just some text\n" * 20,
    "random": os.urandom(20000),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_upload_garbage_answers_422_with_reason(client: httpx.Client, kind: str) -> None:
    r = client.post("/v1/models", files={"file": ("bad.tflite", GARBAGE[kind])},
                    data={"name": kind})
    assert_problem(r, 422, "TFLite")
    assert client.get("/healthz").json() == {"status": "ok"}


def test_upload_truncated_model_answers_422(client: httpx.Client, mlp_bytes: bytes) -> None:
    r = client.post("/v1/models", files={"file": ("t.tflite", mlp_bytes[: len(mlp_bytes) // 2])},
                    data={"name": "truncated"})
    assert_problem(r, 422)


def test_upload_model_without_train_signature_names_it(client: httpx.Client) -> None:
    data = models.build_cached("mlp", omit=("train",))
    r = client.post("/v1/models", files={"file": ("n.tflite", data)}, data={"name": "no-train"})
    assert_problem(r, 422, "missing required signature(s): train")


def test_upload_over_size_limit_answers_413(client: httpx.Client, server: LiveServer) -> None:
    big = b"\0" * (server.settings.max_model_bytes + 1)
    r = client.post("/v1/models", files={"file": ("big.tflite", big)}, data={"name": "big"})
    assert_problem(r, 413)


def test_upload_without_file_answers_422(client: httpx.Client) -> None:
    assert_problem(client.post("/v1/models", data={"name": "x"}), 422, "file")


def test_server_keeps_serving_sessions_after_bad_uploads(
    client: httpx.Client, mlp_id: str
) -> None:
    sid = new_session(client, "survivor", mlp_id)
    for data in GARBAGE.values():
        client.post("/v1/models", files={"file": ("b.tflite", data)}, data={"name": "b"})
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": [[[0.5] * 28] * 28]}})
    assert r.status_code == 200
    assert len(r.json()["outputs"]["output"][0]) == 10


def test_get_unknown_model_answers_404(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/models/mdl_nope"), 404, "mdl_nope")
    assert_problem(client.get("/v1/models/mdl_nope/file"), 404)
    assert_problem(client.delete("/v1/models/mdl_nope"), 404)


def test_delete_model_in_use_answers_409_then_204(client: httpx.Client, mlp_bytes: bytes) -> None:
    model_id = upload(client, mlp_bytes, "to-delete")
    sid = new_session(client, "deleter", model_id)
    assert_problem(client.delete(f"/v1/models/{model_id}"), 409, "session")
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert_problem(client.get(f"/v1/models/{model_id}"), 404)


def _post(client: httpx.Client, data: bytes, name: str) -> httpx.Response:
    return client.post("/v1/models", files={"file": ("m.tflite", data)}, data={"name": name})


def test_upload_same_file_under_same_name_returns_the_existing_model(
    client: httpx.Client, head_bytes: bytes
) -> None:
    first = _post(client, head_bytes, "twice")
    assert first.status_code == 201, first.text
    again = _post(client, head_bytes, "twice")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    listed = client.get("/v1/models", params={"limit": 500}).json()["items"]
    assert [m["id"] for m in listed if m["name"] == "twice"] == [first.json()["id"]]


def test_upload_under_another_name_or_with_other_bytes_makes_a_new_model(
    client: httpx.Client, head_bytes: bytes, mlp_bytes: bytes
) -> None:
    first = _post(client, head_bytes, "kept")
    renamed = _post(client, head_bytes, "kept-renamed")
    other_bytes = _post(client, mlp_bytes, "kept")
    assert [r.status_code for r in (first, renamed, other_bytes)] == [201, 201, 201]
    assert len({r.json()["id"] for r in (first, renamed, other_bytes)}) == 3


def test_upload_after_delete_makes_a_new_model(client: httpx.Client, head_bytes: bytes) -> None:
    first = _post(client, head_bytes, "deleted-then-again")
    assert first.status_code == 201
    assert client.delete(f"/v1/models/{first.json()['id']}").status_code == 204
    again = _post(client, head_bytes, "deleted-then-again")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
