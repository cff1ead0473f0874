"""POST /v1/models/convert over HTTP on both backends: 201 then 200 with converted_from, a
422 naming what is wrong and nothing kept, and models no one here wrote (a Sequential MLP, a
CNN with BatchNorm frozen, MobileNetV2 with a Dense head, a text model) converted, then
trained as a session, a job and a 3-round fleet."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.tables import ModelRow
from tests.api.test_jobs_api import start_job, wait_job
from tests.fleets.support import checkpoint_bytes, digits, finish, read_ckpt, start, upload_dataset
from tests.helpers import LiveServer, assert_problem, new_session
from tests.models import test_convert_builders as build


def convert(client: httpx.Client, data: bytes, name: str, options: dict[str, Any] | None = None,
            filename: str = "m.keras") -> httpx.Response:
    form = {"name": name} | ({"options": json.dumps(options)} if options is not None else {})
    return client.post("/v1/models/convert", files={"file": (filename, data)}, data=form,
                       timeout=600)


@pytest.fixture(scope="module")
def mlp_keras() -> bytes:
    return build.keras_bytes(build.mlp())


def test_convert_model_answers_201_then_200_with_converted_from(
        client: httpx.Client, mlp_keras: bytes) -> None:
    options = {"optimizer": {"name": "sgd", "learning_rate": 0.1}, "label": {"name": "y"}}
    r = convert(client, mlp_keras, "my-mlp", options)
    assert r.status_code == 201, r.text
    model = r.json()
    origin = model["converted_from"]
    assert origin["sha256"] == hashlib.sha256(mlp_keras).hexdigest()
    assert origin["format"] == "keras" and origin["trainable_layers"] == ["hidden", "out"]
    assert origin["options"]["optimizer"] == {"name": "sgd", "learning_rate": 0.1,
                                              "momentum": 0.0}
    assert origin["options"]["loss"] == "categorical_crossentropy"
    train = model["signatures"]["train"]
    assert train["inputs"]["x"] == {"shape": [-1, 28, 28], "dtype": "float32"}
    assert train["inputs"]["y"] == {"shape": [-1, 10], "dtype": "float32"}
    assert set(model["signatures"]) >= {"train", "infer", "save", "restore"}
    again = convert(client, mlp_keras, "my-mlp", options)
    assert again.status_code == 200 and again.json()["id"] == model["id"]
    assert client.get(f"/v1/models/{model['id']}").json() == model


def _footprint(server: LiveServer) -> tuple[int, int]:
    ctx = server.ctx
    with ctx.db.begin() as db:
        count = db.scalar(select(func.count()).select_from(ModelRow))
    return count, len(ctx.store.keys("models/"))


def _lambda_keras() -> bytes:
    import keras

    return build.keras_bytes(keras.Sequential([
        keras.Input((4,), name="x"), keras.layers.Lambda(lambda t: t + 1), keras.layers.Dense(2)]))


def _lstm_keras() -> bytes:
    import keras

    return build.keras_bytes(keras.Sequential([
        keras.Input((5, 3), name="x"), keras.layers.LSTM(4, name="memory"),
        keras.layers.Dense(2)]))


REFUSED: list[tuple[str, dict[str, Any] | str | None, tuple[str, ...]]] = [
    ("text", None, ("not a Keras model",)),
    ("lambda", None, ("Lambda", "safe mode")),
    ("lstm", None, ("layer 'memory' (LSTM) is not supported",)),
    ("mlp", {"optimiser": {"name": "sgd"}}, ("options.optimiser", "unknown option")),
    ("mlp", {"optimizer": {"name": "sgd", "nesterov": True}}, ("options.optimizer.nesterov",)),
    ("mlp", {"loss": "hinge"}, ("options.loss",)),
    ("mlp", {"trainable": ["dense_9"]}, ("options.trainable", "dense_9")),
    ("mlp", {"label": {"name": "x"}}, ("options.label.name",)),
    ("mlp", "{not json", ("options", "JSON")),
]


@pytest.mark.parametrize("kind,options,needles", REFUSED)
def test_convert_model_refuses_naming_what_is_wrong_and_keeps_nothing(
        client: httpx.Client, server: LiveServer, mlp_keras: bytes, kind: str,
        options: dict[str, Any] | str | None, needles: tuple[str, ...]) -> None:
    data = {"text": b"name,label\nfoo,1\n", "lambda": _lambda_keras(), "lstm": _lstm_keras(),
            "mlp": mlp_keras}[kind]
    before = _footprint(server)
    form = {"name": "refused"} | ({} if options is None else {
        "options": options if isinstance(options, str) else json.dumps(options)})
    r = client.post("/v1/models/convert", files={"file": ("m.keras", data)}, data=form,
                    timeout=600)
    assert_problem(r, 422, *needles)
    assert _footprint(server) == before


def test_convert_model_needs_a_file_and_a_name(client: httpx.Client) -> None:
    assert_problem(client.post("/v1/models/convert", data={"name": "x"}), 422, "file")


# Models no one here wrote: (builder, options, data maker, fleet extras).
def _digits(n: int) -> dict[str, np.ndarray]:
    d = digits(n)
    return {"x": d["x"], "y": d["y"]}


def _images(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, n)
    x = rng.random((n, 96, 96, 3), dtype=np.float32) * 0.5
    for c in range(4):
        x[labels == c, :, :, c % 3] += 0.5 * (c + 1) / 4
    return {"x": x, "y": np.eye(4, dtype=np.float32)[labels]}


def _tokens(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.integers(0, 25, (n, 12)).astype(np.int32) + 25 * y[:, None]
    return {"x": x, "y": y}


FOREIGN = {
    "sequential-mlp": (build.mlp, {"optimizer": {"name": "sgd", "learning_rate": 0.1},
                                   "label": {"name": "y"}}, _digits, 64),
    "cnn-batchnorm-frozen": (build.cnn_bn, {"trainable": ["head"], "label": {"name": "y"},
                                            "optimizer": {"name": "sgd", "learning_rate": 0.1,
                                                          "momentum": 0.9}}, _digits, 64),
    "mobilenetv2-head": (build.mobilenet, {"trainable": "last:1", "label": {"name": "y"},
                                           "optimizer": {"name": "adam"}}, _images, 24),
    "text-embedding": (build.text, {"loss": "sparse_categorical_crossentropy",
                                    "from_logits": True, "label": {"name": "y"},
                                    "optimizer": {"name": "adam", "learning_rate": 0.01}},
                       _tokens, 64),
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_convert_model_no_one_here_wrote_then_train_it_as_session_job_and_fleet(
        client: httpx.Client, kind: str) -> None:
    builder, options, make, n = FOREIGN[kind]
    r = convert(client, build.keras_bytes(builder()), kind, options)
    assert r.status_code == 201, r.text
    model = r.json()
    arrays = make(n)
    user = f"byom-{kind}"

    sid = new_session(client, user, model["id"])
    batch = {k: v[:4].tolist() for k, v in arrays.items()}
    losses = []
    for _ in range(3):
        step = client.post(f"/v1/sessions/{sid}/train", json={"inputs": batch})
        assert step.status_code == 200, step.text
        losses.append(step.json()["outputs"]["loss"])
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    out = client.post(f"/v1/sessions/{sid}/infer", json={"inputs": {"x": batch["x"]}})
    assert out.status_code == 200, out.text
    assert np.asarray(out.json()["outputs"]["output"]).shape[0] == 4

    dataset = upload_dataset(client, user, arrays, kind)
    job = wait_job(client, start_job(client, sid, dataset, epochs=2, batch_size=8)["id"])
    assert job["status"] == "succeeded", job
    assert all(np.isfinite(job["metrics"]["epoch_loss"]))

    fleet = finish(client, start(client, user, model_id=model["id"], dataset_id=dataset,
                                 clients=4, clients_per_round=4, rounds=3, batch_size=8,
                                 personal=["optimizer/"], seed=1)["id"])
    assert fleet["progress"]["round"] == 3 and len(fleet["global_checkpoint_ids"]) == 3
    final = read_ckpt(checkpoint_bytes(client, fleet["global_checkpoint_ids"][-1]))
    trained = [name for name in final if not name.startswith("optimizer/")]
    assert trained and all(np.isfinite(final[name]).all() for name in trained)
    # Only the trainable layers' weights are variables; frozen ones are constants.
    assert {name.split("/")[0] for name in trained} == set(
        model["converted_from"]["trainable_layers"])
