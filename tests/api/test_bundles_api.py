"""App bundles over HTTP on both backends: a plain tf.lite.Interpreter that loads a bundle's
model and restores its checkpoint answers infer exactly as the session did; a finished
fleet's global and per-device bundles hold the checkpoints the fleet recorded; 404 and 409."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.db.tables import FleetClientRow, FleetRow
from app.services.bundle import label_names
from tests.fleets.support import (
    checkpoint_bytes,
    digits,
    finish,
    follow,
    npz,
    start,
    upload_dataset,
)
from tests.helpers import BACKENDS, LiveServer, assert_problem, new_session, running_server

X = digits(8)["x"]
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FILES = ["model.tflite", "checkpoint.ckpt", "manifest.json", "Infer.kt", "Infer.swift"]


def unzip(r: httpx.Response) -> dict[str, bytes]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == FILES
        return {name: zf.read(name) for name in FILES}


def plain_infer(files: dict[str, bytes], x: np.ndarray) -> dict[str, np.ndarray]:
    """What an app does: a stock interpreter, restore from the checkpoint file, infer."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=files["model.tflite"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.ckpt"
        path.write_bytes(files["checkpoint.ckpt"])
        interpreter.get_signature_runner("restore")(checkpoint_path=np.array(str(path).encode()))
    return dict(interpreter.get_signature_runner("infer")(x=x))


def session_infer(client: httpx.Client, sid: str, x: np.ndarray) -> dict[str, np.ndarray]:
    r = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": x.tolist()}})
    assert r.status_code == 200, r.text
    return {k: np.asarray(v, dtype=np.float32) for k, v in r.json()["outputs"].items()}


def check_manifest(files: dict[str, bytes], model_id: str, mlp_bytes: bytes) -> dict[str, Any]:
    manifest = json.loads(files["manifest.json"])
    assert manifest["model"]["id"] == model_id
    assert manifest["model"]["sha256"] == hashlib.sha256(mlp_bytes).hexdigest()
    assert files["model.tflite"] == mlp_bytes
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(files["checkpoint.ckpt"]).hexdigest()
    assert manifest["signatures"]["infer"] == {
        "inputs": {"x": {"shape": [-1, 28, 28], "dtype": "float32"}},
        "outputs": {"logits": {"shape": [-1, 10], "dtype": "float32"},
                    "output": {"shape": [-1, 10], "dtype": "float32"}}}
    assert manifest["signatures"]["restore"]["inputs"] == {
        "checkpoint_path": {"shape": [], "dtype": "string"}}
    kotlin, swift = files["Infer.kt"].decode(), files["Infer.swift"].decode()
    assert 'runSignature(mapOf("checkpoint_path" to ckpt.absolutePath)' in kotlin
    assert 'runSignature(mapOf("x" to x), outputs, "infer")' in kotlin
    assert "tensorflow-lite-select-tf-ops:2.16.1" in kotlin
    assert 'signatureRunner(with: "restore")' in swift and '"checkpoint_path"' in swift
    assert 'signatureRunner(with: "infer")' in swift and "TensorFlowLiteSelectTfOps" in swift
    return manifest  # type: ignore[no-any-return]


def test_get_session_bundle_infers_exactly_as_the_session(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes) -> None:
    sid = new_session(client, "bea", mlp_id)
    data = digits(64)
    for i in range(0, 64, 16):
        r = client.post(f"/v1/sessions/{sid}/train", json={"inputs": {
            "x": data["x"][i:i + 16].tolist(), "y": data["y"][i:i + 16].tolist()}})
        assert r.status_code == 200, r.text
    files = unzip(client.get(f"/v1/sessions/{sid}/bundle"))
    manifest = check_manifest(files, mlp_id, mlp_bytes)
    session = client.get(f"/v1/sessions/{sid}").json()
    assert manifest["weights"] == {"kind": "session", "session_id": sid, "step": 4,
                                   "checkpoint_id": session["head_checkpoint_id"]}
    assert manifest["label_names"] is None
    ours, theirs = plain_infer(files, X), session_infer(client, sid, X)
    assert set(ours) == set(theirs) == {"logits", "output"}
    for name in ours:
        assert np.max(np.abs(ours[name] - theirs[name])) == 0, name
    # The checkpoint saved for the bundle is the session's head: a second bundle saves
    # nothing new and is the same zip, byte for byte.
    assert checkpoint_bytes(client, manifest["weights"]["checkpoint_id"]) == files[
        "checkpoint.ckpt"]
    again = client.get(f"/v1/sessions/{sid}/bundle")
    assert again.content == client.get(f"/v1/sessions/{sid}/bundle").content
    assert json.loads(unzip(again)["manifest.json"])["weights"] == manifest["weights"]


def test_get_session_bundle_of_a_fresh_session_holds_the_initial_weights(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes) -> None:
    sid = new_session(client, "bea", mlp_id)
    files = unzip(client.get(f"/v1/sessions/{sid}/bundle"))
    assert json.loads(files["manifest.json"])["weights"]["step"] == 0
    ours, theirs = plain_infer(files, X), session_infer(client, sid, X)
    assert np.max(np.abs(ours["output"] - theirs["output"])) == 0


def test_get_session_bundle_carries_a_datasets_label_names(client: httpx.Client,
                                                           mlp_id: str) -> None:
    sid = new_session(client, "bea", mlp_id)
    named = upload_dataset(client, "bea", {**digits(16), "label_names": np.array(NAMES)})
    plain = upload_dataset(client, "bea", digits(16))
    files = unzip(client.get(f"/v1/sessions/{sid}/bundle", params={"dataset_id": named}))
    assert json.loads(files["manifest.json"])["label_names"] == NAMES
    files = unzip(client.get(f"/v1/sessions/{sid}/bundle", params={"dataset_id": plain}))
    assert json.loads(files["manifest.json"])["label_names"] is None
    assert_problem(client.get(f"/v1/sessions/{sid}/bundle", params={"dataset_id": "ds_nope"}),
                   404, "ds_nope")


@pytest.fixture(scope="module")
def fleet(client: httpx.Client, mlp_id: str) -> dict[str, Any]:
    """A small fleet run to its end: 6 devices, 3 a round, 2 rounds, on a dataset that
    carries its classes' names."""
    ds = upload_dataset(client, "bea", {**digits(240), "label_names": np.array(NAMES)})
    end = finish(client, start(client, "bea", model_id=mlp_id, dataset_id=ds, clients=6,
                               clients_per_round=3, rounds=2, batch_size=16)["id"])
    return end


def test_get_fleet_bundle_holds_the_final_global_model(
        client: httpx.Client, mlp_id: str, mlp_bytes: bytes, fleet: dict[str, Any]) -> None:
    files = unzip(client.get(f"/v1/fleets/{fleet['id']}/bundle"))
    manifest = check_manifest(files, mlp_id, mlp_bytes)
    last = fleet["global_checkpoint_ids"][-1]
    assert manifest["weights"] == {"kind": "fleet", "fleet_id": fleet["id"],
                                   "status": "succeeded", "round": 2, "client_id": None,
                                   "checkpoint_id": last}
    assert manifest["label_names"] == NAMES
    assert files["checkpoint.ckpt"] == checkpoint_bytes(client, last)
    ours = plain_infer(files, X)
    assert ours["output"].shape == (8, 10) and np.allclose(ours["output"].sum(axis=1), 1, 1e-5)


def test_get_client_bundle_holds_the_devices_personalized_model(
        server: LiveServer, client: httpx.Client, mlp_id: str, mlp_bytes: bytes,
        fleet: dict[str, Any]) -> None:
    with server.ctx.db.begin() as db:
        took_part = [(c.client_id, c.checkpoint_id, c.session_id) for c in db.query(
            FleetClientRow).filter(FleetClientRow.fleet_id == fleet["id"]).order_by(
            FleetClientRow.client_id) if c.checkpoint_id]
    assert took_part
    client_id, ckpt_id, session_id = took_part[0]
    files = unzip(client.get(f"/v1/fleets/{fleet['id']}/clients/{client_id}/bundle"))
    manifest = check_manifest(files, mlp_id, mlp_bytes)
    weights = manifest["weights"]
    assert (weights["kind"], weights["client_id"], weights["checkpoint_id"],
            weights["session_id"]) == ("fleet_client", client_id, ckpt_id, session_id)
    assert weights["round"] in (1, 2) and manifest["label_names"] == NAMES
    assert files["checkpoint.ckpt"] == checkpoint_bytes(client, ckpt_id)
    # The device's session answers as its bundle does.
    ours, theirs = plain_infer(files, X), session_infer(client, session_id, X)
    assert np.max(np.abs(ours["output"] - theirs["output"])) == 0


def test_get_client_bundle_of_a_device_that_never_took_part_is_404(
        client: httpx.Client, fleet: dict[str, Any]) -> None:
    assert_problem(client.get(f"/v1/fleets/{fleet['id']}/clients/999/bundle"), 404, "999",
                   "never took part")


@pytest.mark.parametrize("path", ["/v1/sessions/ses_nope/bundle", "/v1/fleets/flt_nope/bundle",
                                  "/v1/fleets/flt_nope/clients/0/bundle"])
def test_get_bundle_of_unknown_ids_is_404(client: httpx.Client, path: str) -> None:
    assert_problem(client.get(path), 404, "nope")


def test_get_client_bundle_with_a_bad_client_id_is_422(client: httpx.Client,
                                                       fleet: dict[str, Any]) -> None:
    assert_problem(client.get(f"/v1/fleets/{fleet['id']}/clients/-1/bundle"), 422, "client_id")


def test_get_bundle_of_a_running_fleet_is_409(server: LiveServer, client: httpx.Client,
                                              mlp_id: str) -> None:
    ds = upload_dataset(client, "bea", digits(240))
    running = start(client, "bea", model_id=mlp_id, dataset_id=ds, clients=6,
                    clients_per_round=3, rounds=100_000, batch_size=16)
    try:
        with server.ctx.db.begin() as db:
            status = db.get(FleetRow, running["id"]).status
        assert status in ("queued", "running")  # 100,000 rounds: far from its end
        assert_problem(client.get(f"/v1/fleets/{running['id']}/bundle"), 409,
                       "ready when it ends")
        assert_problem(client.get(f"/v1/fleets/{running['id']}/clients/0/bundle"), 409)
    finally:
        client.post(f"/v1/fleets/{running['id']}/cancel")
        assert follow(client, running["id"])[-1][1]["status"] == "cancelled"


ADMIN = "admin-token-for-bundle-tests-0123"


@pytest.fixture(scope="module", params=BACKENDS)
def keyed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          s3_endpoint: str) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"bundle-keys-{request.param}")
    with running_server(request.param, root, s3_endpoint, admin_token=ADMIN) as live:
        yield live


def test_get_bundles_of_another_users_objects_is_404(keyed: LiveServer, mlp_bytes: bytes
                                                     ) -> None:
    def as_(token: str) -> httpx.Client:
        return httpx.Client(base_url=keyed.url, timeout=120,
                            headers={"Authorization": f"Bearer {token}"})

    with as_(ADMIN) as admin:
        model_id = admin.post("/v1/models", files={"file": ("m.tflite", mlp_bytes)},
                              data={"name": "mlp"}).json()["id"]
        keys = {u: admin.post(f"/v1/users/{u}/keys").json()["key"] for u in ("ann", "bob")}
    with as_(keys["ann"]) as ann:
        sid = new_session(ann, "ann", model_id)
        ds = upload_dataset(ann, "ann", digits(120))
        fid = finish(ann, start(ann, "ann", model_id=model_id, dataset_id=ds, clients=2,
                                clients_per_round=2, rounds=1, batch_size=16)["id"])["id"]
        assert ann.get(f"/v1/sessions/{sid}/bundle").status_code == 200
        assert ann.get(f"/v1/fleets/{fid}/bundle").status_code == 200
    with as_(keys["bob"]) as bob:
        assert_problem(bob.get(f"/v1/sessions/{sid}/bundle"), 404, "not found")
        assert_problem(bob.get(f"/v1/fleets/{fid}/bundle"), 404, "not found")
        assert_problem(bob.get(f"/v1/fleets/{fid}/clients/0/bundle"), 404, "not found")
        mine = new_session(bob, "bob", model_id)
        assert_problem(bob.get(f"/v1/sessions/{mine}/bundle", params={"dataset_id": ds}), 404,
                       "not found")


@pytest.mark.parametrize(("array", "names"), [
    (np.array(["zero", "one"]), ["zero", "one"]),
    (np.array([b"cat", b"dog"]), ["cat", "dog"]),
    (np.arange(3), ["0", "1", "2"]),
])
def test_label_names_are_read_from_the_label_names_array(array: np.ndarray, names: list[str]
                                                         ) -> None:
    assert label_names({"x": np.zeros((2, 1)), "label_names": array}) == names
    assert label_names({"x": np.zeros((2, 1))}) is None


def test_readme_report_and_bundle_example_runs(server: LiveServer, mlp_bytes: bytes,
                                               tmp_path: Path) -> None:
    from tests.test_readme import blocks, section, sh

    text = section("Phone readiness and app bundles")
    (block,), (shown,) = blocks(text, "sh"), blocks(text)
    script = block.replace("URL=http://127.0.0.1:8000", f"URL={server.url}")
    assert script != block
    (tmp_path / "mlp.tflite").write_bytes(mlp_bytes)
    assert sh(script, tmp_path) == shown
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_dataset_of_label_names_alone_is_422(client: httpx.Client) -> None:
    r = client.post("/v1/users/bea/datasets", data={"name": "names"}, files={
        "file": ("d.npz", npz(label_names=np.array(NAMES)))})
    assert_problem(r, 422, "label_names", "no examples")
